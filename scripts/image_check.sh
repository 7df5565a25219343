#!/usr/bin/env bash
# Build the Containerfile with buildah and check the image from inside:
#
#   * it runs as uid 10001, which cannot write the application or the virtualenv;
#   * every process's entry point is installed (daphne, gunicorn, celery, manage.py);
#   * `manage.py check --deploy --fail-level WARNING` passes inside it with a production
#     environment (DEBUG off, an evidence signing key generated in the container).
#
# The registry's python image cannot be pulled on a machine that reaches only the package
# registries: unless IMAGE_BASE names a base to use, one with the same Debian release and its
# Python 3.11 is made with debootstrap from Debian's own packages and imported once as
# localhost/tms-base:bookworm (kept for the next run). buildah runs the build steps with
# chroot isolation, which needs no container runtime privileges.
#
#   scripts/image_check.sh            (root; apt packages buildah and debootstrap)
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=localhost/tms-console:check
BASE=${IMAGE_BASE:-localhost/tms-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BUILDAH=(buildah --storage-driver "${BUILDAH_STORAGE_DRIVER:-overlay}")

step() { printf '== image: %s\n' "$*"; }

for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || { echo "ERROR: $tool is not installed" >&2; exit 1; }
done

if [ -z "${IMAGE_BASE:-}" ] && ! "${BUILDAH[@]}" inspect --type image "$BASE" >/dev/null 2>&1; then
  step "base $BASE from Debian bookworm ($MIRROR)"
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs/root" "$MIRROR" >"$rootfs/debootstrap.log" 2>&1 || {
    tail -20 "$rootfs/debootstrap.log" >&2
    exit 1
  }
  rm -rf "$rootfs/root/var/cache/apt/archives"/*.deb "$rootfs/root/var/lib/apt/lists"/*
  tar -C "$rootfs/root" -cf "$rootfs/root.tar" .
  base_ctr=$("${BUILDAH[@]}" from scratch)
  "${BUILDAH[@]}" add "$base_ctr" "$rootfs/root.tar" / >/dev/null
  "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$base_ctr"
  "${BUILDAH[@]}" commit --quiet --rm "$base_ctr" "$BASE" >/dev/null
fi

step "build Containerfile on $BASE"
# The CA bundle this machine's pip trusts (a TLS-inspecting proxy's, say), mounted for the build
# steps only: the image keeps Debian's.
build_args=(--build-arg "BASE_IMAGE=$BASE")
host_ca=${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}
if [ -n "$host_ca" ] && [ -f "$host_ca" ]; then
  build_args+=(--volume "$host_ca:/run/build-ca.pem:ro" --build-arg PIP_CERT=/run/build-ca.pem)
fi
started=$(date +%s)
"${BUILDAH[@]}" build --quiet --format docker --isolation chroot --layers=false "${build_args[@]}" \
  -f Containerfile -t "$IMAGE" . >/dev/null
echo "built $IMAGE in $(($(date +%s) - started)) s"

ctr=$("${BUILDAH[@]}" from "$IMAGE")
cleanup() {
  "${BUILDAH[@]}" rm "$ctr" >/dev/null 2>&1 || true
  "${BUILDAH[@]}" rmi "$IMAGE" >/dev/null 2>&1 || true
}
trap cleanup EXIT
run() { "${BUILDAH[@]}" run --isolation chroot --user 10001:10001 "$@"; }

step "runs as a non-root user that cannot change the code"
user=$("${BUILDAH[@]}" inspect --format '{{.OCIv1.Config.User}}' "$IMAGE")
[ "$user" = "10001:10001" ] || { echo "ERROR: the image runs as '$user', not 10001:10001" >&2; exit 1; }
run "$ctr" -- sh -c 'test "$(id -u)" = 10001 && ! test -w /app/manage.py && ! test -w /opt/venv/bin/python3' || {
  echo "ERROR: the image's user can write the application or the virtualenv" >&2
  exit 1
}

step "every process's entry point is there"
run "$ctr" -- sh -c 'command -v daphne && command -v gunicorn && command -v celery' >/dev/null
run --env DEBUG=1 --env TMS_VAR_DIR=/tmp/tms-var "$ctr" -- python -c "import tms_console.asgi, tms_console.wsgi, tms_console.celery" >/dev/null

step "manage.py check --deploy inside the image"
# The settings' secrets as a production deployment sets them (made up here, never stored).
secret=$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=')
run \
  --env DEBUG=0 \
  --env "SECRET_KEY=$secret" \
  --env ALLOWED_HOSTS=tms.example.com \
  --env CSRF_TRUSTED_ORIGINS=https://tms.example.com \
  --env SECURE_PROXY_SSL_HEADER=1 \
  --env "METRICS_TOKEN=$secret-metrics" \
  --env TMS_VAR_DIR=/tmp/tms-var \
  "$ctr" -- sh -c '
    set -e
    DEBUG=1 python manage.py evidence_keygen --out /tmp/keys >/dev/null
    EVIDENCE_SIGNING_KEY_FILE=$(ls /tmp/keys/evidence-*.key.pem) \
      python manage.py check --deploy --fail-level WARNING'
echo "image check passed"
