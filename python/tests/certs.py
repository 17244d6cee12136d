"""Throwaway PKI for the TLS tests: a CA, a server certificate for localhost, a client certificate."""

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _certificate(subject, key, issuer, issuer_key, ca=False, names=()):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if names:
        import ipaddress
        entries = [x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() else x509.DNSName(n) for n in names]
        builder = builder.add_extension(x509.SubjectAlternativeName(entries), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory, server_names=("localhost", "127.0.0.1")):
    """Write ca.pem, server.pem/server.key, client.pem/client.key and other-ca.pem; returns {name: path}."""
    paths = {}

    def write(name, data):
        paths[name] = os.path.join(directory, name)
        with open(paths[name], "wb") as f:
            f.write(data)

    def authority(name):
        key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        return key, subject, _certificate(name, key, subject, key, ca=True)

    ca_key, ca_name, ca_cert = authority("tfs-test CA")
    write("ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM))
    _, _, other_cert = authority("some other CA")
    write("other-ca.pem", other_cert.public_bytes(serialization.Encoding.PEM))
    for role, names in (("server", server_names), ("client", ())):
        key = _key()
        cert = _certificate(f"tfs-test {role}", key, ca_name, ca_key, names=names)
        write(f"{role}.pem", cert.public_bytes(serialization.Encoding.PEM))
        write(f"{role}.key", _pem_key(key))
    return paths


def ssl_config(paths, client_verify=False):
    """TF Serving's SSLConfig text: the PEM contents inline, as its server reads them."""
    def text(name):
        with open(paths[name]) as f:
            return f.read().replace("\n", "\\n")
    lines = [f'server_key: "{text("server.key")}"', f'server_cert: "{text("server.pem")}"']
    if client_verify:
        lines += [f'custom_ca: "{text("ca.pem")}"', "client_verify: true"]
    return "\n".join(lines) + "\n"
