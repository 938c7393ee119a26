# rmds-agent from a locally built binary and the shared libraries it needs
# (scripts/build-images.sh assembles rootfs/); no base image is pulled.
FROM scratch
COPY rootfs/ /
# COPY gives root ownership: the data directory is handed to the agent's user.
COPY --chown=65534:65534 data/ /data/
USER 65534:65534
ENV RMDS_CONFIG=/etc/rmds/agent.toml
VOLUME ["/data"]
EXPOSE 7700
HEALTHCHECK --interval=5s --timeout=4s --retries=5 \
  CMD ["/usr/local/bin/rmds-agent", "--probe", "http://127.0.0.1:7700/healthz"]
ENTRYPOINT ["/usr/local/bin/rmds-agent"]
