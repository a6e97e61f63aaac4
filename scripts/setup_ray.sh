#!/usr/bin/env bash
# Build .venv-ray for hydra/launcher=ray: layered on .venv (which it reuses through a .pth
# file), because hydra-ray-launcher pins cloudpickle<3, which conflicts with joblib 1.6 in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
stamp=".venv-ray/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
[ -f "$stamp" ] && exit 0
[ -x .venv-ray/bin/python ] || .venv/bin/python -m venv .venv-ray
main_site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ray_site=$(.venv-ray/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "import site; site.addsitedir('$main_site')" > "$ray_site/_main_venv.pth"
# pip's resolver notes the joblib/cloudpickle clash of the layered .venv; it does not matter here.
# (pipefail keeps pip's own exit status; only grep's "nothing left" is forgiven.)
.venv-ray/bin/python -m pip install --quiet -e '.[ray]' 2>&1 | { grep -v cloudpickle || true; }
.venv-ray/bin/python -c "import ray, hydra_plugins.hydra_ray_launcher"
touch "$stamp"
echo "setup: .venv-ray ready"
