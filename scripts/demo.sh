#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job on the bundled default model.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
install_dependencies
build_project
exec "$ROOT/scripts/run-demo.sh"
