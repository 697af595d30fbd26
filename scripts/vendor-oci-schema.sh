#!/usr/bin/env bash
# Writes schema/oci/: the JSON Schemas of the OCI image spec that the tests check MemoBuild's
# exported index, manifest, config and layout against (test/support/oci-schema.ts). They are
# kept in the repository so that checking MemoBuild's own output needs nothing from outside it;
# no maintained package on the npm registry was found that carries these schemas.
#
# Where they come from: opencontainers/image-spec, folder schema/, at commit 13cff549 (below),
# unchanged; licence Apache-2.0 (schema/oci/LICENSE is upstream's LICENSE at that commit).
# This script copies them from the conformance data's oci-schema/ folder, which holds that
# upstream folder as it is ($MEMOBUILD_CONFORMANCE_DIR, else ../shared/conformance beside the
# checkout), or from the folder given as its argument (e.g. schema/ of an image-spec checkout at
# that commit). Every file must have the git blob id upstream has for it at that commit (from
# `git ls-tree 13cff549 schema/ LICENSE` there): a copy that differs in any byte is refused.
# It then records the source and the ids in schema/oci/SOURCE, which a test checks.
#   bash scripts/vendor-oci-schema.sh [FOLDER]
set -euo pipefail
cd "$(dirname "$0")/.."

COMMIT=13cff54902ec9ad6320cbc487a685b66fcd67171
declare -A BLOBS=(
  [config-schema.json]=0c325f1e08e9e6ae02877c36c85feb1094f5b752
  [content-descriptor.json]=a5cdcb12a6056d7d4510e2e4877cc9d0e12a5be3
  [defs-descriptor.json]=6fdc86e808f64988c49a1cb562c6320a7af274c0
  [defs.json]=220f5d47db632c48fd84ad0e31019fe9facd4da5
  [image-index-schema.json]=2e5dbf5cd345f263a7157596c4c3a5e562038210
  [image-layout-schema.json]=874d2174c74703a3c0757337aed17e5d79f52746
  [image-manifest-schema.json]=9bce5a15022ade50e661cc4c7771c16a4478dec4
)
LICENSE_BLOB=9fdc20fdb6a80fb84ecc3153533d5295c2d9142b
DEST=schema/oci

source_dir=${1:-${MEMOBUILD_CONFORMANCE_DIR:-$(dirname "$PWD")/shared/conformance}/oci-schema}
[ -d "$source_dir" ] || { echo "vendor-oci-schema: $source_dir: no such folder" >&2; exit 1; }

check() { # FILE EXPECTED_BLOB
  local actual
  actual=$(git hash-object "$1")
  [ "$actual" = "$2" ] || { echo "vendor-oci-schema: $1: git blob $actual, upstream has $2 at $COMMIT" >&2; exit 1; }
}

for name in "${!BLOBS[@]}"; do check "$source_dir/$name" "${BLOBS[$name]}"; done
# The licence is not part of the conformance data: it is committed once and checked here.
check "$DEST/LICENSE" "$LICENSE_BLOB"

for name in "${!BLOBS[@]}"; do cp "$source_dir/$name" "$DEST/$name"; done
{
  echo "# Written by scripts/vendor-oci-schema.sh (run it to regenerate; do not edit by hand)."
  echo "upstream opencontainers/image-spec schema/ and LICENSE"
  echo "commit $COMMIT"
  echo "# git blob id, as \`git ls-tree $COMMIT schema/ LICENSE\` lists it upstream, and file"
  for name in $(printf '%s\n' "${!BLOBS[@]}" | sort); do echo "${BLOBS[$name]} $name"; done
  echo "$LICENSE_BLOB LICENSE"
} >"$DEST/SOURCE"
echo "schema/oci: ${#BLOBS[@]} schemas of opencontainers/image-spec at ${COMMIT:0:8} from $source_dir"
