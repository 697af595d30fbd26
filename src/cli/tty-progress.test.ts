import { describe, expect, test } from "bun:test";
import { fit, sanitize, TtyProgress } from "./tty-progress.ts";

/**
 * A small terminal for the sequences the display writes (CR, LF, cursor up, erase line, erase
 * below, colours, cursor show/hide), wrapping at its width: what a user would see.
 */
class Screen {
  lines: string[] = [""];
  row = 0;
  col = 0;
  constructor(public columns: number, public rows = 40) {}
  write(text: string) {
    for (let i = 0; i < text.length; i++) {
      const c = text[i]!;
      if (c === "\x1b") {
        const match = /^\x1b\[(\??)([0-9;]*)([A-Za-z])/.exec(text.slice(i));
        if (!match) throw new Error(`unexpected escape at ${JSON.stringify(text.slice(i, i + 10))}`);
        i += match[0].length - 1;
        const n = Number(match[2] || "1");
        if (match[3] === "A") this.row = Math.max(0, this.row - n);
        else if (match[3] === "K") this.lines[this.row] = (this.lines[this.row] ?? "").slice(0, this.col);
        else if (match[3] === "J") this.lines.splice(this.row + 1), (this.lines[this.row] = (this.lines[this.row] ?? "").slice(0, this.col));
        else if (!["m", "l", "h"].includes(match[3]!)) throw new Error(`unexpected sequence ${match[0]}`);
      } else if (c === "\r") this.col = 0;
      else if (c === "\n") this.newline();
      else {
        if (this.col >= this.columns) this.newline();
        const line = (this.lines[this.row] ?? "").padEnd(this.col);
        this.lines[this.row] = line.slice(0, this.col) + c + line.slice(this.col + 1);
        this.col++;
      }
    }
  }
  private newline() {
    this.row++;
    this.col = 0;
    if (this.lines.length <= this.row) this.lines.push("");
  }
  text() {
    return this.lines.map((l) => l.trimEnd()).join("\n").trimEnd();
  }
}

/** A finished or running step's line at 60 columns: the time at the right edge, one column spare. */
const row = (name: string, time: string) => `${name}${" ".repeat(59 - name.length - time.length)}${time}`;

function display(columns: number, color = false) {
  const screen = new Screen(columns);
  let clock = 0;
  const tty = new TtyProgress({ write: (t) => screen.write(t), columns: () => screen.columns, rows: () => screen.rows }, { color, now: () => clock });
  return { screen, tty, tick: (ms: number) => (clock += ms) };
}

const plan = {
  type: "plan" as const,
  steps: [
    { id: "a/0", stage: "a", number: 1, name: "[a 1/2] FROM busybox AS a" },
    { id: "a/1", stage: "a", number: 2, name: "[a 2/2] RUN make" },
    { id: "b/0", stage: "b", number: 3, name: "[b 1/2] FROM busybox AS b" },
    { id: "b/1", stage: "b", number: 4, name: "[b 2/2] RUN make test" },
  ],
};

describe("the tty display", () => {
  test("a multi-platform build's plans (one per platform) add up to the total it counts to", () => {
    const { screen, tty } = display(60);
    const platform = (name: string) => ({ type: "plan" as const, steps: plan.steps.slice(0, 2).map((s) => ({ ...s, name: `[${name} ${s.name.slice(1)}` })) });
    tty.sink(platform("linux/amd64"));
    for (const number of [1, 2]) {
      tty.sink({ type: "start", step: `a/${number - 1}`, number, name: "x" });
      tty.sink({ type: "done", step: `a/${number - 1}`, number, status: "cached-local" });
    }
    tty.sink(platform("linux/arm64"));
    tty.sink({ type: "start", step: "a/0", number: 1, name: "[linux/arm64 a 1/2] FROM busybox AS a" });
    tty.redraw();
    expect(screen.text()).toContain("(2/4)");
  });

  test("running steps of parallel stages side by side with their last output lines, finished ones above", () => {
    const { screen, tty, tick } = display(60);
    tty.sink(plan);
    tty.sink({ type: "start", step: "a/0", number: 1, name: plan.steps[0]!.name });
    tty.sink({ type: "done", step: "a/0", number: 1, status: "cached-local" });
    tty.sink({ type: "start", step: "b/0", number: 3, name: plan.steps[2]!.name });
    tty.sink({ type: "done", step: "b/0", number: 3, status: "cached-local" });
    tty.sink({ type: "start", step: "a/1", number: 2, name: plan.steps[1]!.name });
    tty.sink({ type: "start", step: "b/1", number: 4, name: plan.steps[3]!.name });
    for (let i = 1; i <= 7; i++) tty.sink({ type: "output", step: "a/1", number: 2, line: `compiling ${i}` });
    tty.sink({ type: "output", step: "b/1", number: 4, line: "\x1b[31mtest\x1b[0m 1 ok\x07" });
    tick(1500);
    tty.redraw();
    expect(screen.text()).toBe(
      [
        "[+] Building 1.5s (2/4)",
        row("=> [a 2/2] RUN make", "1.5s"),
        ...[3, 4, 5, 6, 7].map((i) => `=> => compiling ${i}`),
        row("=> [b 2/2] RUN make test", "1.5s"),
        "=> => test 1 ok",
      ].join("\n"),
    );
    tick(500);
    tty.sink({ type: "done", step: "a/1", number: 2, status: "executed", durationMs: 2000 });
    expect(screen.text()).toBe(
      [
        "=> CACHED 2 steps: [a 1/2] FROM busybox AS a … [b 1/2] FRO…",
        row("=> [a 2/2] RUN make", "2.0s"),
        "[+] Building 2.0s (3/4)",
        row("=> [b 2/2] RUN make test", "2.0s"),
        "=> => test 1 ok",
      ].join("\n"),
    );
    tty.sink({ type: "done", step: "b/1", number: 4, status: "executed", durationMs: 2100 });
    tty.finish(["image sha256:abc (2 step(s) run, 2 cached)"]);
    expect(screen.text()).toBe(
      [
        "=> CACHED 2 steps: [a 1/2] FROM busybox AS a … [b 1/2] FRO…",
        row("=> [a 2/2] RUN make", "2.0s"),
        row("=> [b 2/2] RUN make test", "2.1s"),
        "image sha256:abc (2 step(s) run, 2 cached)",
      ].join("\n"),
    );
  });

  test("on a narrow terminal no line wraps, and narrowing it mid-build leaves no stale line", () => {
    const { screen, tty, tick } = display(200);
    tty.sink(plan);
    tty.sink({ type: "start", step: "a/1", number: 2, name: `[a 2/2] RUN ${"x".repeat(150)}` });
    tty.sink({ type: "output", step: "a/1", number: 2, line: "y".repeat(190) });
    screen.columns = 30; // the terminal reflows the lines already drawn at the new width, as tmux does
    screen.lines = screen.lines.flatMap((l) => (l.length > 30 ? (l.match(/.{1,30}/g) as string[]) : [l]));
    screen.row = screen.lines.length - 1;
    tick(100);
    tty.redraw();
    expect(screen.text().split("\n")).toEqual(["[+] Building 0.1s (0/4)", "=> [a 2/2] RUN xxxxxxxx… 0.1s", `=> => ${"y".repeat(22)}…`]);
    for (const line of screen.text().split("\n")) expect(line.length).toBeLessThanOrEqual(29);
  });

  test("an error shows the failed step and its last output", () => {
    const { screen, tty } = display(80);
    tty.sink(plan);
    tty.sink({ type: "start", step: "a/1", number: 2, name: "[a 2/2] RUN make" });
    tty.sink({ type: "error", step: "a/1", number: 2, message: "exit code 2", tail: ["cc: error"] });
    tty.finish();
    expect(screen.text()).toBe("=> ERROR [a 2/2] RUN make: exit code 2\n   cc: error");
  });

  test("colours only when asked (NO_COLOR turns them off in ttyProgress)", () => {
    const colored = display(80, true);
    let written = "";
    const tty = new TtyProgress({ write: (t) => (written += t), columns: () => 80, rows: () => 24 }, { color: false, now: () => 0 });
    for (const d of [colored.tty, tty]) {
      d.sink({ type: "start", step: "a/1", number: 2, name: "[a 2/2] RUN make" });
      d.sink({ type: "done", step: "a/1", number: 2, status: "executed", durationMs: 10 });
      d.finish();
    }
    expect(written).not.toMatch(/\x1b\[3\dm/);
    expect(colored.screen.text()).toContain("=> [a 2/2] RUN make");
  });
});

test("sanitize removes what a terminal would act on; fit cuts to the width", () => {
  expect(sanitize("a\x1b[2J\x1b]0;title\x07b\x1b[31mc\x1b[0m\r\x00\td")).toBe("abc  d");
  expect(fit("abcdef", 4)).toBe("abc…");
  expect(fit("abc", 4)).toBe("abc");
  expect(fit("ééééé", 3)).toBe("éé…");
});
