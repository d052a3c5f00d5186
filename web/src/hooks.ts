import { useEffect, useState, useCallback } from "preact/hooks";
import { ApiError } from "./api";

export interface Loaded<T> {
  data?: T;
  error?: ApiError;
  loading: boolean;
  reload: () => void;
}

// useApi runs load whenever deps change and keeps the last answer while a
// new one is on its way (no flicker on refresh).
export function useApi<T>(load: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [state, set] = useState<{ data?: T; error?: ApiError; loading: boolean }>({ loading: true });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    set((s) => ({ ...s, loading: true }));
    load().then(
      (data) => live && set({ data, loading: false }),
      (error) => live && set({ error: error instanceof ApiError ? error : new ApiError(0, String(error)), loading: false }),
    );
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload };
}

export function useInterval(fn: () => void, ms: number) {
  useEffect(() => {
    const id = setInterval(fn, ms);
    return () => clearInterval(id);
  }, [fn, ms]);
}

// usePoll loads when deps change (or reload is called) and loads again
// every ms while again(answer) holds: long work (discovery, a database
// import) followed until it ends. A null load means nothing to follow.
export function usePoll<T>(load: (() => Promise<T>) | null, again: (x: T) => boolean, ms: number, deps: unknown[]): Loaded<T> {
  const [state, set] = useState<{ data?: T; error?: ApiError; loading: boolean }>({ loading: !!load });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    // Like useApi, the last answer stays while the next is on its way: a
    // reload must not blank what the page shows (nothing to follow: none).
    set((s) => (load ? { ...s, loading: true } : { loading: false }));
    if (!load) return;
    let live = true;
    let timer = 0;
    const poll = () =>
      load().then(
        (data) => {
          if (!live) return;
          set({ data, loading: false });
          if (again(data)) timer = window.setTimeout(poll, ms);
        },
        (error) => live && set({ error: error instanceof ApiError ? error : new ApiError(0, String(error)), loading: false }),
      );
    poll();
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload };
}
