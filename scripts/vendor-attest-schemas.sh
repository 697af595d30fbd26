#!/usr/bin/env bash
# Writes schema/spdx/ and checks schema/slsa/: the schemas the tests check MemoBuild's SBOM and
# provenance against (test/support/attest-schema.ts). Kept in the repository, like schema/oci/,
# because no maintained package on the npm registry was found that carries them.
#
# SPDX 2.3: spdx/spdx-spec, tag v2.3 (commit below), schemas/spdx-schema.json, unchanged, with
# that tag's LICENSE. Given a checkout of spdx-spec, this script copies both from the tag and
# refuses a copy whose git blob id differs from upstream's.
# SLSA provenance v1: SLSA publishes its schema as CUE and protobuf only
# (slsa-framework/slsa spec/schema/provenance.cue), so schema/slsa/provenance-v1.schema.json is a
# hand transcription of that file and of the spec's field rules. Given a checkout of slsa, this
# script checks that the CUE file is still the one transcribed (its blob id below).
#   bash scripts/vendor-attest-schemas.sh SPDX_SPEC_CHECKOUT [SLSA_CHECKOUT]
set -euo pipefail
cd "$(dirname "$0")/.."

SPDX_COMMIT=aadf3b0b8dbbabdb4d880b0fc714255fea436ff7
SPDX_SCHEMA_BLOB=ee61e6686e885f8139c132647fd0b4f483b8fb81
SPDX_LICENSE_BLOB=44a22d370bba8d13c7dd7449d71b40ea8842788e
SLSA_COMMIT=24905939fd7dab34e670592a12b8c303e8328d0b
SLSA_CUE_BLOB=22bc5e0d8c02dc353114f0060f2f271803e9bd1d

spdx=${1:?usage: vendor-attest-schemas.sh SPDX_SPEC_CHECKOUT [SLSA_CHECKOUT]}
blob() { git -C "$1" rev-parse "$2:$3"; }
[ "$(blob "$spdx" "$SPDX_COMMIT" schemas/spdx-schema.json)" = "$SPDX_SCHEMA_BLOB" ] || { echo "spdx-spec at $SPDX_COMMIT: schemas/spdx-schema.json is not blob $SPDX_SCHEMA_BLOB" >&2; exit 1; }
[ "$(blob "$spdx" "$SPDX_COMMIT" LICENSE)" = "$SPDX_LICENSE_BLOB" ] || { echo "spdx-spec at $SPDX_COMMIT: LICENSE is not blob $SPDX_LICENSE_BLOB" >&2; exit 1; }
mkdir -p schema/spdx
git -C "$spdx" show "$SPDX_COMMIT:schemas/spdx-schema.json" >schema/spdx/spdx-schema-2.3.json
git -C "$spdx" show "$SPDX_COMMIT:LICENSE" >schema/spdx/LICENSE
if [ -n "${2:-}" ]; then
  actual=$(git -C "$2" rev-parse "$SLSA_COMMIT:spec/schema/provenance.cue")
  [ "$actual" = "$SLSA_CUE_BLOB" ] || { echo "slsa at $SLSA_COMMIT: provenance.cue is blob $actual, transcribed from $SLSA_CUE_BLOB" >&2; exit 1; }
fi
{
  echo "# Written by scripts/vendor-attest-schemas.sh (run it to regenerate; do not edit by hand)."
  echo "spdx/spdx-spec tag v2.3 commit $SPDX_COMMIT"
  echo "$SPDX_SCHEMA_BLOB spdx-schema-2.3.json (upstream schemas/spdx-schema.json)"
  echo "$SPDX_LICENSE_BLOB LICENSE"
} >schema/spdx/SOURCE
{
  echo "# Written by scripts/vendor-attest-schemas.sh. provenance-v1.schema.json is a hand transcription of:"
  echo "slsa-framework/slsa commit $SLSA_COMMIT"
  echo "$SLSA_CUE_BLOB spec/schema/provenance.cue"
} >schema/slsa/SOURCE
echo "schema/spdx: SPDX 2.3 JSON schema from spdx-spec ${SPDX_COMMIT:0:8}; schema/slsa/SOURCE written"
