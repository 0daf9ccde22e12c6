"""HTTPS at the proxy: the certificate on every web host, where it comes from, how long it lasts.

    certs.py      pure: read and check PEM certificates and keys (pair, names, expiry), make CSRs
    hostfiles.py  where the certificate and the ACME tokens live on a web host, what is installed
    install.py    upload a chain + key to every web host (only when changed), ``nginx -t``, reload
    acme_order.py obtain a certificate over ACME HTTP-01 through the proxies (``acme`` library)
    status.py     what each web host serves on its https port: ``certificate_status(gw, host)``
    run.py        plan and apply ``tls.issue`` / ``tls.renew`` in the Operation envelope
"""

from ops.tls.status import CertificateStatus, certificate_status

__all__ = ["CertificateStatus", "certificate_status"]
