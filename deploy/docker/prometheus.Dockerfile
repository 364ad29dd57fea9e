# Prometheus for the compose file: Debian's prometheus binary and its libraries, staged
# by build-images.sh. The configuration and alert rules are mounted at /etc/prometheus.
FROM scratch
COPY rootfs/ /
COPY --chown=65534:65534 data/ /data/
USER 65534:65534
WORKDIR /data
ENTRYPOINT ["/usr/local/bin/prometheus", "--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/data", "--web.listen-address=0.0.0.0:9090"]
