# Sourced by the scripts: installs the Debian packages given as arguments when they are missing
# (apt-get update only then), with sudo when not root. A first argument --no-install-recommends
# is passed on to apt-get.
ensure_apt_packages() {
  local missing=() p opts=()
  if [ "${1:-}" = --no-install-recommends ]; then opts=(--no-install-recommends); shift; fi
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing Debian packages: ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${opts[@]}" "${missing[@]}" >/dev/null
}
