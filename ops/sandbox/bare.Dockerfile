# A bare host for `inv setup`: a fresh Debian VPS as a provider hands it over — sshd,
# root login with the operator's key only, nothing else (no Docker, no deploy user).
# Built by tests/support/bare_host.py on the locally made base image.
ARG BASE=ops-sandbox/debian:bookworm
FROM ${BASE}
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
RUN apt-get update \
 && apt-get install -y --no-install-recommends openssh-server \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
RUN rm -f /etc/ssh/ssh_host_* \
 && install -d -m 0700 /root/.ssh && mkdir -p /run/sshd \
 && printf '%s\n' 'PasswordAuthentication no' 'KbdInteractiveAuthentication no' \
      'PermitRootLogin prohibit-password' 'UseDNS no' > /etc/ssh/sshd_config.d/bare.conf
CMD ["/bin/sh", "-c", "ssh-keygen -A >/dev/null && exec /usr/sbin/sshd -D -e"]
