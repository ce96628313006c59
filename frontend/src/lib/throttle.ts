// Limits how often a value is sent while always delivering the latest one: the first
// value goes out at once, later ones at most once per interval, and the last value of a
// burst is sent when the interval ends (so a cursor that stops is drawn where it stopped).

export class Throttle<T> {
  private last = Number.NEGATIVE_INFINITY;
  private pending: { value: T } | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly intervalMs: number,
    private readonly emit: (value: T) => void,
  ) {}

  push(value: T): void {
    if (this.timer !== undefined) {
      this.pending = { value };
      return;
    }
    const wait = this.last + this.intervalMs - Date.now();
    if (wait <= 0) {
      this.fire(value);
    } else {
      this.pending = { value };
      this.timer = setTimeout(() => this.flush(), wait);
    }
  }

  /** Drops a value waiting to be sent (the connection closed). */
  cancel(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = null;
  }

  private flush(): void {
    this.timer = undefined;
    const p = this.pending;
    this.pending = null;
    if (p !== null) this.fire(p.value);
  }

  private fire(value: T): void {
    this.last = Date.now();
    this.emit(value);
  }
}
