// A fetch for RunPod clients in tests: it shows each request to `intercept`, which may let it
// through or lose its answer (the request reaches the endpoint; the caller sees a network error).

export type RunpodRequestBody = { input?: { task?: string }; policy?: Record<string, number> };

export function watchedFetch(intercept: (url: string, body: RunpodRequestBody | undefined) => 'pass' | 'lose-answer'): typeof fetch {
  return (async (url: string | URL | Request, init?: RequestInit) => {
    const body = typeof init?.body === 'string' ? (JSON.parse(init.body) as RunpodRequestBody) : undefined;
    const verdict = intercept(String(url), body);
    const response = await fetch(url, init);
    if (verdict === 'lose-answer') throw new TypeError('fetch failed: the answer was lost');
    return response;
  }) as typeof fetch;
}
