#!/usr/bin/env bash
# Build .venv-continuum for bench/memory_selection.py's comparison with Continuum's rehearsal
# herding: continuum==1.2.7 from PyPI, layered on .venv (reused through a .pth file naming its
# site-packages), so torch and numpy are not downloaded a second time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
stamp=".venv-continuum/.installed-continuum-1.2.7"
[ -f "$stamp" ] && exit 0
[ -x .venv-continuum/bin/python ] || .venv/bin/python -m venv .venv-continuum
main_site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
site=$(.venv-continuum/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "import site; site.addsitedir('$main_site')" > "$site/_main_venv.pth"
# continuum imports six without declaring it.
.venv-continuum/bin/python -m pip install --quiet 'continuum==1.2.7' six
# (run outside the repository: its datasets/ folder would shadow the datasets package)
(cd / && "$OLDPWD/.venv-continuum/bin/python" -c "from continuum.rehearsal import herd_closest_to_barycenter")
touch "$stamp"
echo "setup: .venv-continuum ready"
