// Approving from the release page. GET .../permissions says, per stage awaiting approval, whether
// this token's principal may approve it (the API runs the approve endpoint's own check); a button is
// shown only where it may, and it posts exactly the version and revision digest shown, so a commit
// that lands in between is refused (409) rather than approved by mistake.
import { post, type Answer, type Permissions, type StagePermission } from "./api";
import { h } from "./dom";

function describe(p: StagePermission, a: Answer): string {
  if (a.status === 200) {
    const who = String(a.body["principal"] ?? "you");
    return `Approved ${p.version} for ${p.stage} as ${who} (revision ${p.revision}); the controller promotes it on its next pass.`;
  }
  const reason = a.body["reason"] ? ` ${String(a.body["reason"])}` : "";
  return `Not approved (${a.status}${reason}): ${String(a.body["error"] ?? "no error message")}`;
}

/** The approvals section: a button per stage the caller may approve, the reason where it may not. */
export function approvals(perm: Permissions, result: HTMLElement, done: () => void, fail: (e: unknown) => void): HTMLElement {
  if (perm.stages.length === 0) return h("p", { class: "empty", id: "approvals-none" }, "No stage awaits approval.");
  const items = perm.stages.map((p) => {
    if (!p.canApprove) {
      return h("li", { "data-approval-stage": p.stage, class: "may-not" },
        `${p.stage} awaits approval of ${p.version}: ${p.reason ?? `${perm.principal} may not approve it`}`);
    }
    const button = h("button", { type: "button", "data-approve": p.stage }, `Approve ${p.version} for ${p.stage}`);
    button.addEventListener("click", () => {
      button.disabled = true;
      result.className = "approve-result";
      result.textContent = `Approving ${p.version} for ${p.stage}…`;
      post(`/api/v1/releases/${encodeURIComponent(perm.name)}/approve`,
        { stage: p.stage, version: p.version, revision: p.revision })
        .then((a) => {
          result.className = a.status === 200 ? "approve-result ok" : "approve-result error";
          result.dataset["status"] = String(a.status);
          result.textContent = describe(p, a);
          done();
        })
        .catch(fail)
        .finally(() => { button.disabled = false; });
    });
    return h("li", { "data-approval-stage": p.stage, class: "may" }, button,
      h("span", { class: "hint" }, ` revision ${p.revision}`));
  });
  return h("ul", { class: "approvals" }, ...items);
}
