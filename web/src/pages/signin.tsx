import { useState } from "preact/hooks";
import { api, ApiError, session } from "../api";

export function SignIn({ onDone }: { onDone: () => void }) {
  const [tok, setTok] = useState("");
  const [err, setErr] = useState<string>();
  const [busy, setBusy] = useState(false);
  return (
    <section class="card signin">
      <h1>Sign in</h1>
      <p>
        Paste an API token. The admin token is in <code>&lt;data&gt;/admin-token</code> on the server; <code>palisade token create</code> makes others. The token stays in this tab only
        (sessionStorage) and is sent with every API call.
      </p>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setErr(undefined);
          const prev = session.token();
          session.set(tok.trim());
          try {
            await api("/api/v1/status");
            onDone();
          } catch (e) {
            if (prev) session.set(prev);
            else session.clear();
            setErr(e instanceof ApiError && e.status === 401 ? "The server refused this token." : (e as Error).message);
          } finally {
            setBusy(false);
          }
        }}
      >
        <label for="token">API token</label>
        <input id="token" type="password" autocomplete="off" value={tok} onInput={(e) => setTok(e.currentTarget.value)} data-testid="token-input" autoFocus />
        <button type="submit" disabled={!tok.trim() || busy}>
          {busy ? "Checking…" : "Sign in"}
        </button>
        {err && (
          <div class="error" role="alert">
            {err}
          </div>
        )}
      </form>
    </section>
  );
}
