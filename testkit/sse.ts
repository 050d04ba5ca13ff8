// Reading a server-sent event stream in tests: each event's name and JSON data, until a named one.
export async function readEvents(res: Response, last: string): Promise<{ event: string; data: any }[]> {
  const out: { event: string; data: any }[] = [];
  let buffer = '';
  const decoder = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
      out.push({ event, data: JSON.parse(/^data: (.*)$/m.exec(block)?.[1] ?? 'null') });
      if (event === last) return out;
    }
  }
  return out;
}
