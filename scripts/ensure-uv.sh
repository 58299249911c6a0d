# Sourced by the scripts that need uv: installs it with pip when it is missing and puts
# the folder pip installed it into on PATH (pip's scripts folder, or ~/.local/bin for
# a --user install).
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet uv || python3 -m pip install --quiet --user uv
  PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$HOME/.local/bin:$PATH"
  export PATH
  hash -r
  command -v uv >/dev/null 2>&1 || { echo "uv is not on PATH after pip install" >&2; exit 1; }
fi
