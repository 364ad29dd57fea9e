# The icn image: the icn binary and the libraries it links, nothing else. Built from a
# root filesystem staged by build-images.sh from a binary built on this machine, so
# nothing is pulled from a registry.
FROM scratch
COPY rootfs/ /
COPY --chown=65534:65534 data/ /data/
USER 65534:65534
WORKDIR /data
ENTRYPOINT ["/usr/local/bin/icn"]
