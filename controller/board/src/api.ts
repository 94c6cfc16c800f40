// The API the board uses: bearer token from sessionStorage, JSON reads, and the server-sent event
// stream read with fetch (EventSource cannot send an Authorization header, and a token in the URL
// would end up in logs and history).
const KEY = "pipectl.token";

export interface Gate { name: string; type: string; verdict: string; message?: string; evidence?: Record<string, unknown> }
export interface StageStatus {
  version?: string | null; phase?: string; gates?: Gate[]; lastTransitionTime?: string | null;
  reason?: string; message?: string; gitCommit?: string | null;
}
export interface Status { version?: string; phase?: string; currentStage?: string; stages?: Record<string, StageStatus> }
export interface Release { name: string; status: Status }
export interface AuditRow { seq: number; ts: string; kind: string; record: AuditRecord }
export interface AuditRecord {
  kind: string; stage?: string | null; version?: string; outcome?: string; reason?: string | null; message?: string;
  actor?: string; git_commit?: string | null; finished_at?: string; started_at?: string; gates?: Gate[];
  details?: Record<string, unknown>; actions?: string[];
}
export interface LineageNode { id: string; kind: string; name: string }
export interface LineageEdge { from: string; to: string; inferred: boolean; columns: string[] }
export interface Lineage { stage: string; version: string | null; nodes: LineageNode[]; edges: LineageEdge[] }
// GET /api/v1/releases/NAME/permissions (controller/api/board.py): one entry per stage awaiting approval
export interface StagePermission {
  stage: string; version: string; revision: string; canApprove: boolean; reason: string | null; refusal: string | null;
}
export interface Permissions { name: string; principal: string; commit: string | null; stages: StagePermission[] }
export interface Answer { status: number; body: Record<string, unknown> }

export class Unauthorized extends Error {}

export const token = {
  get: (): string | null => sessionStorage.getItem(KEY),
  set: (t: string): void => sessionStorage.setItem(KEY, t.trim()),
  clear: (): void => sessionStorage.removeItem(KEY),
};

function headers(): HeadersInit {
  return { Authorization: `Bearer ${token.get() ?? ""}`, Accept: "application/json" };
}

export async function get<T>(path: string): Promise<T> {
  const r = await fetch(path, { headers: headers(), cache: "no-store" });
  if (r.status === 401) throw new Unauthorized("the token was refused");
  if (!r.ok) {
    const body = (await r.json().catch(() => ({}))) as { error?: string };
    throw new Error(`${path}: ${r.status} ${body.error ?? r.statusText}`);
  }
  return (await r.json()) as T;
}

/** POST a JSON body; any answer but 401 is returned with its status (a 4xx body is the API's error). */
export async function post(path: string, body: unknown): Promise<Answer> {
  const r = await fetch(path, {
    method: "POST", cache: "no-store", body: JSON.stringify(body),
    headers: { ...headers(), "Content-Type": "application/json" },
  });
  if (r.status === 401) throw new Unauthorized("the token was refused");
  return { status: r.status, body: (await r.json().catch(() => ({}))) as Record<string, unknown> };
}

/** Follow /api/v1/stream until `signal` aborts; reconnect after a pause when it ends. */
export async function stream(
  onReleases: (items: Release[]) => void,
  onState: (live: boolean) => void,
  onUnauthorized: () => void,
  signal: AbortSignal,
): Promise<void> {
  while (!signal.aborted) {
    try {
      const r = await fetch("/api/v1/stream", { headers: headers(), signal, cache: "no-store" });
      if (r.status === 401) { onUnauthorized(); return; }
      if (!r.ok || !r.body) throw new Error(`stream: ${r.status}`);
      onState(true);
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut: number;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let event = "message";
          let data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) event = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (event === "releases") onReleases((JSON.parse(data) as { items: Release[] }).items);
          else if (event === "unauthorized") { onUnauthorized(); return; }
        }
      }
    } catch {
      if (signal.aborted) return;
    }
    onState(false);
    await new Promise((res) => setTimeout(res, 2000));
  }
}
