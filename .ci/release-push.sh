#!/usr/bin/env bash
# Push one image archive from image/build.sh to its registry, sign it and attach its
# SBOMs and provenance — the release workflow's last step. CI runs it with --dry-run
# (no registry here): the same inputs are read and checked, the commands printed.
#
#   .ci/release-push.sh [--dry-run] ARCHIVE.oci.tar REF        REF: ghcr.io/OWNER/NAME:TAG
#
#   skopeo copy --all --preserve-digests   the index and both platforms, digests unchanged
#   cosign sign --recursive                keyless (the workflow's OIDC identity): the index
#                                          and every platform manifest
#   cosign attest --type slsaprovenance1   the provenance predicate, on the index
#   cosign attest --type cyclonedx         each platform's SBOM, on that platform's manifest
# RELEASE_TAG set (a GitHub release): the archive, SBOMs and provenance are uploaded to it.
set -euo pipefail
cd "$(dirname "$0")/.."
dry=
if [[ ${1:-} == --dry-run ]]; then dry=1; shift; fi
archive=${1:?usage: .ci/release-push.sh [--dry-run] ARCHIVE.oci.tar REF}
ref=${2:?usage: .ci/release-push.sh [--dry-run] ARCHIVE.oci.tar REF}
base=${archive%.oci.tar}
repo=${ref%:*}
run() {
  if [[ -n $dry ]]; then printf 'release-push (dry run):'; printf ' %q' "$@"; printf '\n'; else "$@"; fi
}
field() { python3 -c 'import json,sys; print(eval(sys.argv[2], {"s": json.load(open(sys.argv[1]))}))' "$base.summary.json" "$1"; }

for f in "$archive" "$base.summary.json" "$base.provenance.json"; do
  [[ -s $f ]] || { echo "release-push: $f missing: run image/build.sh first" >&2; exit 1; }
done
index=$(field 's["digest"]')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -c 'import json,sys; json.dump(json.load(open(sys.argv[1]))["predicate"], open(sys.argv[2], "w"))' \
  "$base.provenance.json" "$work/provenance.predicate.json"

run skopeo copy --all --preserve-digests "oci-archive:$archive" "docker://$ref"
run cosign sign --yes --recursive "$repo@$index"
run cosign attest --yes --type slsaprovenance1 --predicate "$work/provenance.predicate.json" "$repo@$index"
while read -r platform manifest; do
  sbom="$base.linux-${platform#linux/}.cdx.json"
  [[ -s $sbom ]] || { echo "release-push: $sbom missing" >&2; exit 1; }
  run cosign attest --yes --type cyclonedx --predicate "$sbom" "$repo@$manifest"
done < <(field '"\n".join(i["platform"] + " " + i["manifest"] for i in s["images"])')
if [[ -n ${RELEASE_TAG:-} ]]; then
  run gh release upload --clobber "$RELEASE_TAG" "$archive" "$base".*.cdx.json "$base.provenance.json" "$base.summary.json"
fi
echo "release-push: $ref = $repo@$index"
