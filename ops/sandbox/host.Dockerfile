# A sandbox host: sshd + its own dockerd (Docker-in-Docker), like a small VPS.
# Built by ops/sandbox/images.py on top of the locally made base image; the tag is a
# hash of this file and the base image id, so editing this file triggers a rebuild.
ARG BASE=ops-sandbox/debian:bookworm
FROM ${BASE}

ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      openssh-server docker.io ca-certificates iptables procps postgresql-client curl \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*

# Each container generates its own host keys at start (ssh-keygen -A): none are baked in.
RUN rm -f /etc/ssh/ssh_host_*

# The deploy user: no password ('*' = no password login, but not a locked account).
RUN useradd --create-home --shell /bin/bash --groups docker deploy \
 && usermod -p '*' deploy \
 && install -d -m 0700 -o deploy -g deploy /home/deploy/.ssh \
 && mkdir -p /run/sshd \
 && printf '%s\n' \
      'PasswordAuthentication no' \
      'KbdInteractiveAuthentication no' \
      'PermitRootLogin no' \
      'PubkeyAuthentication yes' \
      'UseDNS no' \
      > /etc/ssh/sshd_config.d/ops-sandbox.conf

# The tool creates {app_dir} (/srv/<app>) without sudo on sandbox hosts. In production the
# RUNBOOK has the operator create app_dir once, owned by the deploy user.
RUN chown deploy:deploy /srv

EXPOSE 22
CMD ["/usr/sbin/sshd", "-D", "-e"]
