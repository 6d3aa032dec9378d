"""Package discovery: the CLI lives in ./cli but installs as ``hddm_p2p.cli`` (no generic top-level ``cli``)."""

from setuptools import find_packages, setup

packages = find_packages(include=["hddm_p2p", "hddm_p2p.*"])
packages += ["hddm_p2p.cli"] + [f"hddm_p2p.cli.{p}" for p in find_packages("cli")]
package_dir = {"hddm_p2p.cli": "cli"}

setup(packages=packages, package_dir=package_dir)
