/** A realistic, large multi-stage Dockerfile of about `lines` lines, for benchmarks. */
export function generateDockerfile(lines: number): string {
  const out: string[] = ["# syntax=docker/dockerfile:1", "ARG BASE=busybox", "ARG VERSION=1.0.0"];
  let stage = 0;
  while (out.length < lines) {
    const name = `stage${stage}`;
    out.push(`FROM \${BASE}:latest AS ${name}`, "ARG VERSION", `ENV APP_HOME=/opt/${name} PATH=/opt/${name}/bin:$PATH`);
    out.push(`WORKDIR \${APP_HOME}`, `LABEL org.example.stage="${name}" version=$VERSION`);
    for (let i = 0; i < 20 && out.length < lines; i++) {
      out.push(`COPY --chown=1000:1000 src/${name}/part${i} ./part${i}/`);
      out.push(`RUN --mount=type=cache,target=/root/.cache set -eux; \\`, `    make -C part${i} VERSION=\${VERSION} \\`, `    && echo done-${i}`);
      if (i % 5 === 0) out.push("RUN <<SCRIPT", `echo building ${name} part ${i}`, "test -d part" + i, "SCRIPT");
    }
    if (stage > 0) out.push(`COPY --from=stage${stage - 1} /opt/stage${stage - 1}/bin /opt/prev/bin`);
    out.push('HEALTHCHECK --interval=30s CMD ["true"]', 'CMD ["/bin/sh"]');
    stage++;
  }
  return out.join("\n") + "\n";
}
