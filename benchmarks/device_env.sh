# Sourced by the scripts that run on a lent GPU machine (benchmarks/*/gpu_*.sh): its python has torch
# but not optuna, so optuna's wheels travel in .whl (name .whl in the device call's carry). Once, here:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl optuna==5.1.0 colorlog==6.12.0 alembic==1.20.1 Mako==1.4.3 SQLAlchemy==2.1.9
# Sets $python (PYTHON, default python3) and PYTHONPATH (the checkout, then the wheels).
python=${PYTHON:-python3}
if ! "$python" -c "import optuna" 2>/dev/null; then
    compgen -G ".whl/*.whl" >/dev/null || { echo "error: $python lacks optuna and .whl holds no wheels: see benchmarks/device_env.sh"; exit 2; }
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 2
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
