# The two commands of the README: `make book` and `make test`.
# Both create .venv from the pinned requirements when it is missing or stale.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BUILD := _build
CACHE := $(BUILD)/.jupyter_cache
FINGERPRINT := $(BUILD)/.inputs-fingerprint
LOCALES := locales
LANGUAGES := zh_CN

.PHONY: book english test translations linkcheck benchmark benchmark-digits benchmark-latent benchmark-likelihood benchmark-dit publish clean clean-cache

# Both editions: English at _build/html, Chinese at _build/html/zh (tools/build_book.py).
# The build driver clears the execution cache itself when the package, assets/ or the
# figures' translations changed, and never trains (a stale checkpoint stops it at once).
book: $(STAMP)
	$(BIN)/python tools/build_book.py html

# After the English text changed: extract its messages (and the figures' texts)
# and merge them into the catalogues under locales/, ready for translators.
translations: $(STAMP)
	$(BIN)/python tools/build_book.py gettext
	$(BIN)/sphinx-intl update --pot-dir $(BUILD)/gettext/templates --locale-dir $(LOCALES) $(addprefix -l ,$(LANGUAGES))
	$(BIN)/python tools/drop_format_flags.py
	-$(BIN)/python tools/translation_status.py

test: $(STAMP) browser
	$(BIN)/python -m pytest tests --run-book -n 2 --dist worksteal

# The browser tests drive Debian's Chromium; CJK fonts make the Chinese pages readable.
.PHONY: browser
browser:
	@if ! command -v chromium >/dev/null || ! fc-list :lang=zh | grep -q .; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && apt-get install -y -qq chromium fonts-noto-cjk >/dev/null; \
		else \
			echo "The browser tests need Chromium and a CJK font: sudo apt-get install chromium fonts-noto-cjk"; \
		fi; \
	fi

# Both editions as PDF, _build/pdf/flowdiff-book-en.pdf and -zh.pdf: Sphinx's LaTeX builder on the execution
# cache that `make book` filled (no cell runs twice), then XeLaTeX. TeX Live, xeCJK and the Noto CJK fonts come
# from Debian's packages, installed here when missing (as root), as Chromium is for the browser tests.
.PHONY: pdf tex
pdf: $(STAMP) tex
	$(BIN)/python tools/build_book.py pdf

TEX_PACKAGES := texlive-xetex texlive-latex-extra texlive-fonts-recommended latexmk texlive-lang-chinese \
	fonts-noto-cjk xindy fonts-freefont-otf poppler-utils
tex:
	@if ! command -v xelatex >/dev/null || ! kpsewhich xeCJK.sty >/dev/null || ! command -v pdffonts >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && apt-get install -y -qq --no-install-recommends $(TEX_PACKAGES) >/dev/null; \
		else \
			echo "The PDF editions need TeX Live and CJK fonts: sudo apt-get install --no-install-recommends $(TEX_PACKAGES)"; \
		fi; \
	fi

# Only the English edition, for quick iterations on a chapter.
english: $(STAMP)
	$(BIN)/python tools/build_book.py html --only en

# Every external link of the book, checked (where the network is reachable): _build/linkcheck/output.txt
linkcheck: $(STAMP)
	$(BIN)/python tools/build_book.py linkcheck

# Build times from an empty execution cache, both editions (_build/benchmarks/build.md), and
# sample quality of Chapter 5's flows against solver and steps (_build/benchmarks/samplers.md).
benchmark: $(STAMP)
	$(BIN)/python tools/benchmark_samplers.py
	$(BIN)/python tools/benchmark_build.py

# Classifier-free guidance on MNIST, scale x steps -> judged accuracy and Frechet distance, from the
# shipped checkpoints (never trains): assets/benchmarks/digits-guidance.json, the table of Chapter 10.
benchmark-digits: $(STAMP)
	$(BIN)/python tools/benchmark_guidance.py

# Latent flow against the pixel-space U-Net: parameters, training and sampling time, judged quality,
# from the shipped checkpoints (never trains): assets/benchmarks/latent-vs-pixel.json, the table of Chapter 11.
benchmark-latent: $(STAMP)
	$(BIN)/python tools/benchmark_latent.py

# Mutation check (not part of `make test` or CI, tens of minutes): plants a factor 2, a sign flip and a wrong
# time into the formulas of solvers, paths, losses, guidance, steering and discrete, runs each module's
# fast tests against every mutant, and lists the survivors: _build/mutants/report.md and report.json.
.PHONY: mutants
mutants: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python tools/mutants.py --jobs 2

# Likelihoods of the MNIST models (bits per dimension of 1,000 test digits, latent codes, out-of-distribution
# images), from the shipped checkpoints (never trains): assets/benchmarks/likelihood-mnist.json, read by Chapter 15.
benchmark-likelihood: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python tools/benchmark_likelihood.py

# The DiT against the U-Net on MNIST pixels (cost, judged quality over w and steps, from the shipped checkpoints) and
# the adaLN-Zero ablation (two short training runs, about half an hour): assets/benchmarks/dit-vs-unet.json, read by Chapter 17.
benchmark-dit: $(STAMP)
	$(BIN)/python tools/benchmark_dit.py

# Both editions and their PDFs to the gh-pages branch of origin (tools/publish.py, ghp-import).
publish: book pdf
	$(BIN)/python tools/publish.py

$(STAMP): requirements.txt code/pyproject.toml
	@$(BIN)/python -c "import sys" 2>/dev/null || { rm -rf $(VENV); $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $(STAMP)

clean-cache:
	rm -rf $(CACHE) $(BUILD)/doctrees $(FINGERPRINT)

clean:
	rm -rf $(BUILD)
