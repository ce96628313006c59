//! CanvasChat API types.
