import { createContext, useContext } from 'react';
import { useStore } from 'zustand';
import type { ChatClient } from '../net/client';
import type { ChatState, ChatStore } from './store';
import type { ViewState, ViewStore } from './view';

export const StoreContext = createContext<ChatStore | null>(null);
export const ClientContext = createContext<ChatClient | null>(null);
export const ViewContext = createContext<ViewStore | null>(null);

export function useChat<T>(selector: (s: ChatState) => T): T {
  const store = useContext(StoreContext);
  if (store === null) throw new Error('useChat outside <StoreContext.Provider>');
  return useStore(store, selector);
}

export function useChatStore(): ChatStore {
  const store = useContext(StoreContext);
  if (store === null) throw new Error('useChatStore outside <StoreContext.Provider>');
  return store;
}

/** The live client; null before the first connection is set up. */
export function useClient(): ChatClient | null {
  return useContext(ClientContext);
}

export function useView<T>(selector: (s: ViewState) => T): T {
  const store = useContext(ViewContext);
  if (store === null) throw new Error('useView outside <ViewContext.Provider>');
  return useStore(store, selector);
}

export function useViewStore(): ViewStore {
  const store = useContext(ViewContext);
  if (store === null) throw new Error('useViewStore outside <ViewContext.Provider>');
  return store;
}
