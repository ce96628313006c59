import { useEffect, useMemo, useState } from 'react';
import { channelFromSearch, saveName, startingName, userColour } from './lib/identity';
import { chatUrl } from './lib/protocol';
import { ChatClient } from './net/client';
import { ClientContext, StoreContext, useChat } from './state/context';
import { createChatStore } from './state/store';
import { CanvasSurface } from './components/CanvasSurface';
import { ConnectionStatus } from './components/ConnectionStatus';
import { NameForm } from './components/NameForm';
import { PresencePanel } from './components/PresencePanel';
import { ShareLink } from './components/ShareLink';

function storage(kind: 'localStorage' | 'sessionStorage'): Storage | null {
  try {
    return window[kind];
  } catch {
    return null;
  }
}

export function App() {
  const { channel, rejected } = useMemo(() => channelFromSearch(window.location.search), []);
  const [start] = useState(() => startingName(storage('sessionStorage'), storage('localStorage')));
  const [name, setName] = useState<string | null>(start.joined);
  const [editingName, setEditingName] = useState(false);

  useEffect(() => {
    document.title = `#${channel} · CanvasChat`;
  }, [channel]);

  if (name === null || editingName) {
    return (
      <NameForm
        initial={name ?? start.suggestion}
        channel={channel}
        onCancel={name === null ? undefined : () => setEditingName(false)}
        onSubmit={(n) => {
          saveName(storage('sessionStorage'), n);
          saveName(storage('localStorage'), n);
          setName(n);
          setEditingName(false);
        }}
      />
    );
  }
  return <ChatScreen userId={name} channel={channel} rejected={rejected} onChangeName={() => setEditingName(true)} />;
}

interface ChatScreenProps {
  userId: string;
  channel: string;
  rejected: string | null;
  onChangeName(): void;
}

function ChatScreen({ userId, channel, rejected, onChangeName }: ChatScreenProps) {
  const store = useMemo(() => createChatStore(), []);
  const [client, setClient] = useState<ChatClient | null>(null);

  useEffect(() => {
    store.getState().setIdentity(userId, channel);
    const c = new ChatClient({ store, url: chatUrl(window.location, userId, channel) });
    c.start();
    setClient(c);
    const online = () => c.retryNow();
    window.addEventListener('online', online);
    return () => {
      window.removeEventListener('online', online);
      c.stop();
      setClient(null);
    };
  }, [store, userId, channel]);

  return (
    <StoreContext.Provider value={store}>
      <ClientContext.Provider value={client}>
        <div className="app">
          <header className="topbar">
            <h1 className="topbar__title">
              CanvasChat <span className="topbar__channel">#{channel}</span>
            </h1>
            <ShareLink channel={channel} />
            <ConnectionStatus />
            <button
              type="button"
              className="button button--small button--quiet topbar__me"
              onClick={onChangeName}
              aria-label={`You are ${userId}. Change name`}
            >
              <span className="presence__dot" style={{ background: userColour(userId) }} aria-hidden="true" />
              {userId}
            </button>
          </header>
          {rejected !== null && (
            <p className="banner" role="alert">
              “{rejected}” is not a valid channel name (1–64 letters, digits, “_”, “.” or “-”); you are in #{channel}.
            </p>
          )}
          <main className="app__main">
            <CanvasSurface />
          </main>
          <PresencePanel />
          <ServerNotice />
          <LatestMessageAnnouncer />
        </div>
      </ClientContext.Provider>
    </StoreContext.Provider>
  );
}

function ServerNotice() {
  const notice = useChat((s) => s.notice);
  const clear = useChat((s) => s.clearNotice);
  if (notice === null) return null;
  return (
    <div className="notice" role="alert" data-testid="notice">
      <span>{notice.text}</span>
      <button type="button" className="button button--small button--quiet" onClick={clear} aria-label="Dismiss">
        ×
      </button>
    </div>
  );
}

/** Reads incoming messages to screen readers; the canvas itself is visual. */
function LatestMessageAnnouncer() {
  const latest = useChat((s) => {
    for (let i = s.messages.length - 1; i >= 0; i--) {
      const m = s.messages[i];
      if (m !== undefined && m.status === 'received') return m;
    }
    return undefined;
  });
  return (
    <div className="sr-only" aria-live="polite">
      {latest !== undefined ? `${latest.userId} says: ${latest.text}` : ''}
    </div>
  );
}
