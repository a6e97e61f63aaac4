#!/usr/bin/env bash
# Build .venv-avalanche for bench/vs_avalanche.py's side-by-side runs: avalanche-lib==0.6.0 from
# PyPI, layered on .venv (reused through a .pth file naming its site-packages), so torch and
# torchvision are .venv's own and never installed a second time. Avalanche goes in with --no-deps;
# the dependencies it imports go in pinned, without torch/torchvision (taken from .venv).
# Nothing here touches .venv itself.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
stamp=".venv-avalanche/.installed-avalanche-0.6.0"
[ -f "$stamp" ] && exit 0
[ -x .venv-avalanche/bin/python ] || .venv/bin/python -m venv .venv-avalanche
main_site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
site=$(.venv-avalanche/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "import site; site.addsitedir('$main_site')" > "$site/_main_venv.pth"
pip=(.venv-avalanche/bin/python -m pip install --quiet)
"${pip[@]}" --no-deps 'avalanche-lib==0.6.0'
# What avalanche 0.6.0 imports at `import avalanche.training` (numpy, matplotlib, scikit-learn,
# tensorboard, tqdm, packaging, typing-extensions come from .venv). GEM solves its QP with
# qpsolvers' "quadprog" backend, so quadprog stands in for qpsolvers[open_source_solvers].
# torchmetrics and pytorchcv go in --no-deps: their only missing requirement would be torch.
"${pip[@]}" --no-deps 'torchmetrics==1.9.0' 'lightning-utilities==0.15.3' 'pytorchcv==0.0.74'
"${pip[@]}" 'psutil==7.2.2' 'gputil==1.4.0' 'dill==0.4.1' 'gdown==6.5.1' \
  'qpsolvers==4.13.0' 'quadprog==0.1.14' 'wandb==0.31.0'
if ls "$site" | grep -q -E '^(torch|torchvision)(-|$)'; then
  echo "setup: a second torch was installed into .venv-avalanche: remove it" >&2
  exit 1
fi
# (run outside the repository: its datasets/ folder would shadow Avalanche's imports)
(cd / && "$OLDPWD/.venv-avalanche/bin/python" -c "import avalanche.training, avalanche.benchmarks")
touch "$stamp"
echo "setup: .venv-avalanche ready (avalanche $(cd / && "$OLDPWD/.venv-avalanche/bin/python" -c 'import avalanche; print(avalanche.__version__)'))"
