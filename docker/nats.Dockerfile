# nats-server from the Debian package's binary and its shared libraries
# (scripts/build-images.sh assembles rootfs/); rmds-agent rides along as the health probe.
FROM scratch
COPY rootfs/ /
EXPOSE 4222 8222
HEALTHCHECK --interval=5s --timeout=4s --retries=5 \
  CMD ["/usr/local/bin/rmds-agent", "--probe", "http://127.0.0.1:8222/healthz"]
ENTRYPOINT ["/usr/local/bin/nats-server"]
CMD ["-p", "4222", "-m", "8222"]
