# mk/docker.mk - the stage images (included by the top-level Makefile; `make help` lists `##` targets).
#
#   make build                          images from the official python:3.11-slim-bookworm base (pinned)
#   make build OFFLINE=1                images on an engine that cannot pull: local debootstrap bases
#   make build BASE_IMAGE=local/python-base:bookworm   the same, naming the base
#   make push REGISTRY=127.0.0.1:5000   push the images `make build` built, named for that registry
#
# Image names: <REGISTRY>/biometrics-<stage>:<IMAGE_VERSION> and :latest, where IMAGE_VERSION is
# VERSION (the packages' version) plus the git commit: 0.1.0-1a2b3c4d5e6f (-dirty with local changes).

IMAGE_STAGES        ?= extract transform load validate backup
REGISTRY            ?= biometrics
PYTHON_BASE_IMAGE   := python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1
LOCAL_BASE_IMAGE    ?= local/python-base:bookworm
LOCAL_PG_BASE_IMAGE ?= local/python-base:bookworm-pg15
IMAGES_FILE         ?= dags/biometrics_images.json
DOCKER_BUILD_FLAGS  ?=

IMAGE_PACKAGE_VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
IMAGE_GIT_COMMIT      := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
IMAGE_GIT_SHORT       := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
IMAGE_GIT_DIRTY       := $(shell git diff --quiet HEAD -- 2>/dev/null || echo -dirty)
IMAGE_VERSION         ?= $(IMAGE_PACKAGE_VERSION)-$(IMAGE_GIT_SHORT)$(IMAGE_GIT_DIRTY)

ifeq ($(OFFLINE),1)
BASE_IMAGE := $(LOCAL_BASE_IMAGE)
endif
BASE_IMAGE ?= $(PYTHON_BASE_IMAGE)
# The local base has no PostgreSQL client: the backup image then builds on the local -pg15 base.
ifeq ($(BASE_IMAGE),$(LOCAL_BASE_IMAGE))
BACKUP_BASE_IMAGE ?= $(LOCAL_PG_BASE_IMAGE)
IMAGE_BASE_DEPS   := base-images
endif
BACKUP_BASE_IMAGE ?= $(BASE_IMAGE)

IMAGE_ENV = REGISTRY='$(REGISTRY)' IMAGE_VERSION='$(IMAGE_VERSION)' GIT_COMMIT='$(IMAGE_GIT_COMMIT)' \
	STAGES='$(IMAGE_STAGES)' BASE_IMAGE='$(BASE_IMAGE)' BACKUP_BASE_IMAGE='$(BACKUP_BASE_IMAGE)' \
	IMAGES_FILE='$(IMAGES_FILE)' DOCKER_BUILD_FLAGS='$(DOCKER_BUILD_FLAGS)'

.PHONY: docker-engine base-images wheelhouse build push images images-prune image-version image-ref

docker-engine: ## Make sure a Docker engine runs (fresh Debian as root: install docker.io and start dockerd)
	@scripts/docker-engine.sh

base-images: docker-engine ## Build the local base images with debootstrap (for engines that cannot pull)
	@scripts/base-image.sh '$(LOCAL_BASE_IMAGE)' '$(LOCAL_PG_BASE_IMAGE)'

wheelhouse: ## Build build/wheelhouse: our wheels + third-party wheels for the images (CPython 3.11)
	@scripts/wheelhouse.sh $(IMAGE_STAGES)

build: docker-engine $(IMAGE_BASE_DEPS) wheelhouse ## Build the stage images <REGISTRY>/biometrics-<stage>:<version> and :latest
	@$(IMAGE_ENV) scripts/images.sh build
	@$(IMAGE_ENV) scripts/images.sh ls

push: docker-engine ## Push the built stage images: make push REGISTRY=host:port (tags them for it first)
	@$(IMAGE_ENV) scripts/images.sh push

images: ## List the stage images of this version with their sizes
	@$(IMAGE_ENV) scripts/images.sh ls

images-prune: ## Remove the stage images of other versions (keeps this one, the pinned one and :latest)
	@$(IMAGE_ENV) scripts/images.sh prune

image-version: ## Print the image version (VERSION + git commit)
	@echo '$(IMAGE_VERSION)'

image-ref: ## Print one image reference: make -s image-ref STAGE=extract
	@echo '$(REGISTRY)/biometrics-$(STAGE):$(IMAGE_VERSION)'
