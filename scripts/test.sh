#!/usr/bin/env bash
# Installs what is missing, builds in Release and runs every test (C++ through CTest, Python through unittest).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
install_dependencies "${TEST_PACKAGES[@]}"
build_project
cd "$BUILD_DIR"
ctest --output-on-failure -j "$(nproc)" --timeout 1500 "$@"
