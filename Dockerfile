# whoiscrawl: one image for the operator (`whoiscrawl operator`) and the workers (`whoiscrawl worker`).
# Build: docker build -t ghcr.io/whoiscrawl/whoiscrawl:0.1.0 .

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Every dependency ships manylinux wheels for CPython 3.11: no compiler in the build stage.
# tests/integration/test_image.py installs the same COPY sources the same way, outside Docker.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY whoiscrawl ./whoiscrawl
COPY operator ./operator
COPY worker ./worker
RUN python -m venv /opt/whoiscrawl \
 && /opt/whoiscrawl/bin/pip install .

FROM python:3.11-slim
LABEL org.opencontainers.image.title="whoiscrawl" \
      org.opencontainers.image.description="WHOIS/RDAP crawler of the IPv4 space: operator and workers" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/whoiscrawl/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/whoiscrawl /opt/whoiscrawl
# The same numeric user the pod securityContexts ask for (runAsNonRoot needs a numeric USER).
RUN groupadd --system --gid 10001 whoiscrawl \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/whoiscrawl --create-home whoiscrawl
USER 10001:10001
WORKDIR /home/whoiscrawl
EXPOSE 9090 8080
ENTRYPOINT ["whoiscrawl"]
CMD ["--help"]
