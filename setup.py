from setuptools import find_packages, setup

with open("README.md", encoding="utf-8") as f:
    long_description = f.read()

EXTRAS = {
    "test": ["pytest>=7", "hypothesis>=6", "scikit-learn>=1.3", "scipy>=1.10", "h5py>=3.8", "pillow>=9.1"],
    "docs": ["sphinx>=7", "sphinx-gallery>=0.17", "myst-parser>=2", "furo>=2024.1", "sphinx-argparse>=0.4"],
    "examples": ["scikit-learn>=1.3", "scipy>=1.10", "h5py>=3.8", "pillow>=9.1", "mlxtend>=0.23"],
}
EXTRAS["dev"] = sorted({pkg for pkgs in EXTRAS.values() for pkg in pkgs} | {"ruff"})

setup(
    name="pyro-hfvae",
    version="0.1.0",
    description="Structured and hierarchical disentangled representation learning on Pyro",
    long_description=long_description,
    long_description_content_type="text/markdown",
    packages=find_packages(include=["pyro_hfvae", "pyro_hfvae.*"]),
    package_data={"pyro_hfvae": ["py.typed", "training/configs/*.toml", "training/reference/*.json"]},
    python_requires=">=3.10",
    # torch is pinned by the installer (see .ci/run and the README): never let pip pick one.
    install_requires=[
        "pyro-ppl>=1.9",
        "torch>=2.0",
        "numpy>=1.24",
        "arviz>=0.17",
        "matplotlib>=3.7",
        "networkx>=3.0",
        "scikit-learn>=1.3",
        "scipy>=1.10",
        "tqdm>=4.60",
        "xarray>=2023.1",
        "tomli>=2.0; python_version<'3.11'",
    ],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["pyro-hfvae=pyro_hfvae.training.cli:main"]},
    license="Apache-2.0",
)
