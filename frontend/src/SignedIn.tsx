import { useEffect, useState, type ReactNode } from 'react';
import { TokenKeeper } from './net/auth';
import type { ChatClient, ClientAuth } from './net/client';

type SignIn = { kind: 'loading' } | { kind: 'in'; sub: string } | { kind: 'out'; reason: string };

interface SignedInProps {
  tokenUrl: string | null;
  /** The chat for the signed-in user: `sub` is the name, `auth` feeds the connection. */
  children: (sub: string, auth: ClientAuth, onClient: (client: ChatClient | null) => void) => ReactNode;
}

/**
 * JWT mode: fetches a token from the same-site token URL, keeps it fresh (each new one goes
 * to the open connection) and shows a clear signed-out screen when there is none.
 */
export function SignedIn({ tokenUrl, children }: SignedInProps) {
  const [state, setState] = useState<SignIn>({ kind: 'loading' });
  // The current keeper and connection, linked outside rendering: the connection asks for the
  // token when it opens, the keeper hands fresh tokens to the connection.
  const [links] = useState(() => {
    const held: { keeper: TokenKeeper | null; client: ChatClient | null } = { keeper: null, client: null };
    return {
      held,
      auth: { token: () => held.keeper?.current() ?? null } satisfies ClientAuth,
      onClient: (c: ChatClient | null) => {
        held.client = c;
      },
      /** Makes `k` the keeper the connection asks; returns the undo for the effect's cleanup. */
      attachKeeper: (k: TokenKeeper) => {
        held.keeper = k;
        return () => {
          if (held.keeper === k) held.keeper = null;
        };
      },
    };
  });

  useEffect(() => {
    if (tokenUrl === null) return;
    // One keeper per effect run, so StrictMode's remount cannot leave a stopped one behind.
    const k = new TokenKeeper({
      url: tokenUrl,
      fetch: (url, init) => fetch(url, init),
      onToken: (token) => links.held.client?.sendAuth(token.token),
      onSignedOut: (reason) => setState({ kind: 'out', reason }),
    });
    const unlink = links.attachKeeper(k);
    k.start().then(
      (token) => setState({ kind: 'in', sub: token.sub }),
      (error: unknown) =>
        setState({ kind: 'out', reason: error instanceof Error ? error.message : 'Signing in failed.' }),
    );
    return () => {
      k.stop();
      unlink();
    };
  }, [tokenUrl, links]);

  if (tokenUrl === null) {
    return <SignedOut reason="This chat needs a sign-in, but its server names no token URL (CANVASCHAT_AUTH_TOKEN_URL)." />;
  }
  if (state.kind === 'loading') return null;
  if (state.kind === 'out') return <SignedOut reason={state.reason} />;
  return children(state.sub, links.auth, links.onClient);
}

function SignedOut({ reason }: { reason: string }) {
  return (
    <main className="gate">
      <div className="gate__card" role="alert" data-testid="signed-out">
        <h1 className="gate__title">Signed out</h1>
        <p className="gate__lead">{reason}</p>
        <button type="button" className="button" onClick={() => window.location.reload()}>
          Reload
        </button>
      </div>
    </main>
  );
}
