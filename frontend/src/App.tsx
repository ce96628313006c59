import { useEffect, useMemo, useRef, useState } from 'react';
import { encodeSavedRecovery, loadRecovery, saveRecovery } from './lib/history';
import { channelFromSearch, saveName, startingName, userColour } from './lib/identity';
import { chatUrl } from './lib/protocol';
import { ChatClient, type ClientAuth } from './net/client';
import { loadPageConfig, type PageConfig } from './net/auth';
import { SignedIn } from './SignedIn';
import { ClientContext, StoreContext, useChat, ViewContext } from './state/context';
import { announcement } from './lib/announce';
import { createChatStore, MAX_MESSAGES } from './state/store';
import { createViewStore } from './state/view';
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

/** Anonymous (a chosen name) or, when the gateway says so, JWT mode (the name is the token's). */
export function App() {
  const [config, setConfig] = useState<PageConfig | null>(null);
  useEffect(() => {
    void loadPageConfig((url, init) => fetch(url, init)).then(setConfig);
  }, []);
  if (config === null) return null;
  if (config.auth === 'anonymous') return <AnonymousApp />;
  return <SignedInApp tokenUrl={config.tokenUrl} />;
}

function SignedInApp({ tokenUrl }: { tokenUrl: string | null }) {
  const { channel, rejected } = useMemo(() => channelFromSearch(window.location.search), []);
  useEffect(() => {
    document.title = `#${channel} · CanvasChat`;
  }, [channel]);
  return (
    <SignedIn tokenUrl={tokenUrl}>
      {(sub, auth, onClient) => (
        <ChatScreen userId={sub} channel={channel} rejected={rejected} auth={auth} onClient={onClient} />
      )}
    </SignedIn>
  );
}

function AnonymousApp() {
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
  /** Absent in JWT mode: the name is the token's. */
  onChangeName?: () => void;
  /** JWT mode: the token sent first, and where the client is handed for fresh ones. */
  auth?: ClientAuth;
  onClient?: (client: ChatClient | null) => void;
}

function ChatScreen({ userId, channel, rejected, onChangeName, auth, onClient }: ChatScreenProps) {
  const store = useMemo(() => createChatStore(), []);
  const view = useMemo(() => createViewStore(), []);
  const [client, setClient] = useState<ChatClient | null>(null);

  useEffect(() => {
    store.getState().setIdentity(userId, channel);
    // A reload resumes the channel's history where this tab left it.
    const session = storage('sessionStorage');
    const saved = loadRecovery(session, channel);
    if (saved !== null) store.getState().restoreRecovery(saved);
    let written = '';
    const unsubscribe = store.subscribe((s, prev) => {
      if (s.recovery === null || (s.recovery === prev.recovery && s.messages === prev.messages)) return;
      const text = encodeSavedRecovery(s.recovery, s.recoveryPoint() ?? { epoch: s.recovery.epoch, offset: 0 });
      if (text !== written) saveRecovery(session, channel, text);
      written = text;
    });
    const c = new ChatClient({ store, url: (since) => chatUrl(window.location, userId, channel, since), auth });
    c.start();
    onClient?.(c);
    // The client is a connection, so it lives in the effect (created, started and stopped
    // with it, also across StrictMode's remount); children get it through state.
    // eslint-disable-next-line react-hooks/set-state-in-effect
    setClient(c);
    const online = () => c.retryNow();
    window.addEventListener('online', online);
    return () => {
      window.removeEventListener('online', online);
      unsubscribe();
      c.stop();
      setClient(null);
      onClient?.(null);
    };
  }, [store, userId, channel, auth, onClient]);

  return (
    <StoreContext.Provider value={store}>
      <ViewContext.Provider value={view}>
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
                disabled={onChangeName === undefined}
                aria-label={onChangeName === undefined ? `You are signed in as ${userId}` : `You are ${userId}. Change name`}
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
            <MissedNotice />
            <LatestMessageAnnouncer />
          </div>
        </ClientContext.Provider>
      </ViewContext.Provider>
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

/** After an incomplete recovery: said once, politely, and out of the way. */
function MissedNotice() {
  const shown = useChat((s) => s.missedNotice !== null);
  const dismiss = useChat((s) => s.dismissMissedNotice);
  return (
    // The live region stays in the page so the sentence is announced when it appears.
    <div role="status" className="missed-region">
      {shown && (
        <div className="missed" data-testid="missed-notice">
          <span>Some messages may have been missed while you were away.</span>
          <button type="button" className="button button--small button--quiet" onClick={dismiss}>
            OK
          </button>
        </div>
      )}
    </div>
  );
}

/** Reads incoming messages to screen readers, politely; the canvas itself is visual. */
function LatestMessageAnnouncer() {
  const messages = useChat((s) => s.messages);
  const announced = useRef(new Set<string>());
  const [text, setText] = useState('');

  useEffect(() => {
    const fresh = messages.filter((m) => !m.own && !announced.current.has(m.key));
    if (fresh.length === 0) return;
    for (const m of fresh) announced.current.add(m.key);
    // Only ids still on the canvas need remembering.
    if (announced.current.size > 2 * MAX_MESSAGES) {
      announced.current = new Set(messages.map((m) => m.key));
    }
    setText(announcement(fresh));
  }, [messages]);

  return (
    <div className="sr-only" aria-live="polite" data-testid="announcer">
      {text}
    </div>
  );
}
