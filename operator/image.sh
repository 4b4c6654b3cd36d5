#!/usr/bin/env bash
# Build the operator image as an OCI archive without a Docker engine or a container registry:
#   operator/image.sh OUT.oci.tar
# The same image as operator/Dockerfile (Debian bookworm's Python 3.11, a virtualenv in
# /opt/unbusy with the runtime dependencies only, user 10001, entry point `unbusy run`), made
# from Debian packages by mmdebstrap and packed by umoci, both from apt. No registry is needed:
# the base is Debian's archive itself, the Python packages come from PyPI as wheels.
# Needs root, or unprivileged user namespaces with subordinate ids (mmdebstrap's unshare mode).
set -euo pipefail

out=${1:?usage: operator/image.sh OUT.oci.tar}
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
suite=bookworm
tag=unbusy

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Wheels of the package and its runtime dependencies (no test extras), built on this machine
# from the files the Dockerfile copies: the image's Python is Debian's 3.11, which takes the
# same cp311 manylinux wheels.
mkdir -p "$work/src/operator"
cp "$repo/pyproject.toml" "$repo/README.md" "$work/src/"
cp -r "$repo/operator/unbusy" "$work/src/operator/"
"$python" -m pip wheel --quiet --wheel-dir "$work/wheels" "$work/src"

# The environment of every command run inside the root filesystem: the host's (PIP_* among
# them) stays out.
inside=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin)
# SOURCE_DATE_EPOCH (the commit's time) makes mmdebstrap's file dates reproducible.
SOURCE_DATE_EPOCH=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s) \
mmdebstrap --quiet --variant=essential --include=python3,python3-venv,ca-certificates \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook="copy-in $work/wheels /tmp" \
  --customize-hook="chroot \"\$1\" ${inside[*]} python3 -m venv /opt/unbusy" \
  --customize-hook="chroot \"\$1\" ${inside[*]} /opt/unbusy/bin/pip install --quiet --no-index --find-links /tmp/wheels unbusy" \
  --customize-hook="chroot \"\$1\" ${inside[*]} /opt/unbusy/bin/pip uninstall --quiet --yes pip setuptools" \
  --customize-hook='rm -rf "$1/tmp/wheels" "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
  --customize-hook='echo "unbusy:x:10001:" >> "$1/etc/group"' \
  --customize-hook='echo "unbusy:x:10001:10001::/nonexistent:/usr/sbin/nologin" >> "$1/etc/passwd"' \
  "$suite" "$work/rootfs.tar" \
  "deb http://deb.debian.org/debian $suite main" \
  "deb http://deb.debian.org/debian $suite-updates main" \
  "deb http://deb.debian.org/debian-security $suite-security main"

# One layer, the root filesystem; the configuration is the Dockerfile's final stage.
layout="$work/oci"
umoci init --layout "$layout"
umoci new --image "$layout:$tag"
umoci raw add-layer --image "$layout:$tag" "$work/rootfs.tar"
umoci config --image "$layout:$tag" \
  --config.user 10001:10001 \
  --config.entrypoint unbusy --config.entrypoint run \
  --config.env PATH=/opt/unbusy/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env PYTHONDONTWRITEBYTECODE=1 --config.env PYTHONUNBUFFERED=1 \
  --config.exposedports 8080/tcp --config.exposedports 8081/tcp \
  --config.label org.opencontainers.image.title=unbusy \
  --config.label "org.opencontainers.image.description=Kubernetes operator for NVIDIA Triton fleets" \
  --config.label org.opencontainers.image.licenses=Apache-2.0 \
  --config.label "org.opencontainers.image.version=$("$python" -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$repo/pyproject.toml")" \
  --history.created_by "operator/image.sh"
umoci gc --layout "$layout"

# An OCI archive is the layout directory as a tar (skopeo's and podman's oci-archive:).
mkdir -p "$(dirname "$out")"
tar --create --file "$out.tmp" --directory "$layout" --sort=name .
mv "$out.tmp" "$out"
