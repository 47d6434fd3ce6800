"""C2PA Content Credentials: a signed manifest inside every WAV, MP3 and FLAC Soundry stores or serves.

What the two provenance layers prove:

* The **watermark** (:mod:`gen_server.audio.watermark`) is in the sound itself. It survives re-encoding,
  resampling and cuts, and says "this installation made it" (its payload names the job), but nothing
  more, and only to someone holding the installation's key.
* **C2PA** (this module, through ``c2pa-python``) is a manifest signed with the installation's
  certificate and stored in the file: the ``c2pa.created`` action with digital source type
  ``trainedAlgorithmicMedia``, the generator, and an ``org.soundry.generation`` assertion (model, its
  licence, commercial use, job, seed, watermark payload), bound to the file's bytes by a hash. Any
  C2PA reader can show who signed it and what it claims, and whether the audio changed after signing
  (a data-hash mismatch). It proves nothing once removed: any re-encode or editor that does not sign
  again strips it (the watermark is still there). Transcoded downloads are signed anew with the
  stored original as their ``parentOf`` ingredient (the ``c2pa.transcoded`` action).

Who signed: by default a per-installation CA and signing certificate (EC P-256), generated once into
``DATA_DIR/secrets/c2pa.pem`` (private key, signing certificate, CA certificate; mode 0600) like the
watermark key. Verifiers that do not know that CA report the signature as valid but the signer as
*untrusted*; ``soundry verify`` and ``POST /v1/watermark/detect`` trust this installation's own CA.
An operator with a certificate from a CA that verifiers trust sets ``SOUNDRY_C2PA_CERT`` (PEM chain,
signing certificate first) and ``SOUNDRY_C2PA_KEY`` (its PEM private key); both are checked at start
by signing a test file, and a bad one stops the process with a message naming the setting.

Formats: ``c2pa-python`` 0.38 signs WAV, MP3 and FLAC (also MP4/M4A, which Soundry does not write).
Ogg/Opus, AAC (ADTS) and the raw formats (``pcm``, ``ulaw``, ``alaw``) cannot carry a manifest;
:func:`verify` says so. Live streams are never signed (a manifest needs the whole file).
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import re
import threading
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import c2pa
import numpy as np
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from gen_server.audio.encode import encode
from gen_server.audio.types import Audio
from gen_server.contract.spec import JobSpec
from gen_server.instance_secrets import SecretsError, file_secret, secrets_dir
from gen_server.settings import Settings

logger = logging.getLogger(__name__)

CERT_VAR: Final = "SOUNDRY_C2PA_CERT"
KEY_VAR: Final = "SOUNDRY_C2PA_KEY"
BUNDLE_NAME: Final = "c2pa.pem"
SIGNABLE: Final[dict[str, str]] = {"wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac"}
"""Formats Soundry writes that c2pa-python can sign -> the MIME type it is told."""
TRAINED_ALGORITHMIC_MEDIA: Final = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
GENERATION_LABEL: Final = "org.soundry.generation"
C2PA_SIGNING_EKU: Final = ObjectIdentifier("1.3.6.1.4.1.62558.2.1")
ALTERED_CODES: Final = frozenset(
    {"assertion.dataHash.mismatch", "assertion.boxesHash.mismatch", "assertion.bmffHash.mismatch"}
)
"""Validation failures meaning the file's bytes changed after signing (as opposed to the manifest)."""
UNTRUSTED: Final = "signingCredential.untrusted"
_PRIVATE_KEY = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.+?-----END \1PRIVATE KEY-----", re.S)
_READ_SETTINGS: Final[dict[str, Any]] = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}


def _version() -> str:
    try:
        return metadata.version("soundry")
    except metadata.PackageNotFoundError:  # pragma: no cover - the project is always installed
        return "0.1.0"


SOFTWARE_AGENT: Final[dict[str, str]] = {"name": "Soundry", "version": _version()}
GENERATOR: Final = f"Soundry {_version()}"


SigningError = c2pa.C2paError
"""What a failed signature raises."""


class CredentialsError(SecretsError):
    """A C2PA certificate or key that cannot sign; the message names the setting at fault."""


# ------------------------------------------------------------------------------------------ identity


@dataclass(frozen=True, slots=True)
class SigningIdentity:
    """What signs this installation's manifests (PEM bytes as c2pa-python takes them)."""

    chain_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)
    alg: str
    subject: str
    anchors_pem: str = field(repr=False)
    """The root that :func:`verify` trusts: the chain's last certificate (this installation's CA)."""
    source: str


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Soundry"),
        ]
    )


def new_identity_pem(years: int = 10) -> str:
    """A fresh CA and signing certificate (EC P-256) as one PEM text: key, signing certificate, CA.

    The signing certificate has what c2pa requires (KeyUsage digitalSignature, critical; an
    ExtendedKeyUsage of emailProtection and the C2PA signing OID; subject and authority key ids). The
    CA's private key is thrown away once it signed: nothing else is ever issued from it.
    """
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=365 * years)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    tag = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()).digest.hex()[:8]
    ca_name = _name(f"Soundry installation CA {tag}")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(f"Soundry signer {tag}"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, C2PA_SIGNING_EKU]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for cert in (leaf, ca):
        pem += cert.public_bytes(serialization.Encoding.PEM)
    return pem.decode("ascii")


def _alg(key: object, source: str) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algs = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name in algs:
            return algs[key.curve.name]
        raise CredentialsError(f"{source}: C2PA cannot sign with the EC curve {key.curve.name}")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    raise CredentialsError(f"{source}: C2PA signs with EC (P-256/384/521), Ed25519 or RSA keys only")


def load_identity(cert_pem: bytes, key_pem: bytes, *, cert_source: str, key_source: str) -> SigningIdentity:
    """Check a certificate chain and its private key, and sign a test file with them.

    Args:
        cert_pem: PEM certificates, the signing certificate first (other PEM blocks are ignored).
        key_pem: PEM text holding the signing certificate's private key (unencrypted).
        cert_source: Setting or file named in errors about the certificate.
        key_source: Setting or file named in errors about the key.

    Raises:
        CredentialsError: naming ``cert_source`` or ``key_source``.
    """
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as e:
        raise CredentialsError(f"{cert_source} holds no readable PEM certificate ({e})") from e
    block = _PRIVATE_KEY.search(key_pem)
    try:
        if block is None:
            raise ValueError("no PEM private key block")
        key = serialization.load_pem_private_key(block.group(0), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise CredentialsError(f"{key_source} holds no readable unencrypted PEM private key ({e})") from e
    leaf = chain[0]
    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(*public) != key.public_key().public_bytes(*public):
        raise CredentialsError(
            f"{key_source} is not the private key of the first certificate in {cert_source}"
        )
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    identity = SigningIdentity(
        chain_pem=b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain),
        key_pem=pkcs8,
        alg=_alg(key, key_source),
        subject=leaf.subject.rfc4514_string(),
        anchors_pem=chain[-1].public_bytes(serialization.Encoding.PEM).decode("ascii"),
        source=cert_source,
    )
    probe = encode(Audio(np.zeros((1, 800), np.float32), 8000), "wav")
    try:
        _sign(identity, {"title": "probe.wav", "assertions": [_created_actions()]}, probe, "wav")
    except c2pa.C2paError as e:
        raise CredentialsError(
            f"{cert_source}: c2pa cannot sign with this certificate ({e}); the signing certificate needs "
            "KeyUsage digitalSignature, an ExtendedKeyUsage such as emailProtection or "
            f"{C2PA_SIGNING_EKU.dotted_string}, subject and authority key identifiers, and must be valid now"
        ) from e
    return identity


_CACHE: dict[tuple[str, Path | None, Path | None], SigningIdentity] = {}
_LOCK = threading.Lock()


def _read_pem(path: Path, var: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise CredentialsError(f"{var}: cannot read {path}: {e.strerror or e}") from e


def resolve_identity(settings: Settings) -> SigningIdentity:
    """This installation's C2PA signing identity: ``SOUNDRY_C2PA_CERT``/``KEY``, else the generated one.

    Resolved and checked once per process and configuration; where it comes from is logged once.

    Raises:
        CredentialsError: a setting given alone, an unreadable or unusable certificate or key (named),
            or a secrets folder that cannot be written.
    """
    cache_key = (str(settings.data_dir.resolve()), settings.c2pa_cert, settings.c2pa_key)
    with _LOCK:
        found = _CACHE.get(cache_key)
        if found is not None:
            return found
        cert_path, key_path = settings.c2pa_cert, settings.c2pa_key
        if cert_path is not None or key_path is not None:
            if cert_path is None or key_path is None:
                have, missing = (CERT_VAR, KEY_VAR) if key_path is None else (KEY_VAR, CERT_VAR)
                raise CredentialsError(f"{have} is set but {missing} is not: set both, or neither")
            found = load_identity(
                _read_pem(cert_path, CERT_VAR),
                _read_pem(key_path, KEY_VAR),
                cert_source=f"{CERT_VAR} ({cert_path})",
                key_source=f"{KEY_VAR} ({key_path})",
            )
        else:
            path = secrets_dir(settings) / BUNDLE_NAME
            try:
                text, source = file_secret(path, f"{CERT_VAR}/{KEY_VAR}", new_identity_pem)
            except SecretsError as e:
                raise CredentialsError(str(e)) from e
            bundle = text.encode("ascii", "replace")
            hint = f"{path} (delete it to have a new one generated, or set {CERT_VAR} and {KEY_VAR})"
            found = load_identity(bundle, bundle, cert_source=hint, key_source=hint)
            found = SigningIdentity(
                found.chain_pem, found.key_pem, found.alg, found.subject, found.anchors_pem, source
            )
        _CACHE[cache_key] = found
    logger.info("C2PA signing certificate: %s (%s)", found.subject, found.source)
    return found


# ------------------------------------------------------------------------------------------ signing


def can_sign(fmt: str) -> bool:
    """True when files of ``fmt`` can carry C2PA Content Credentials."""
    return fmt in SIGNABLE


def _created_actions() -> dict[str, Any]:
    created = {
        "action": "c2pa.created",
        "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
        "softwareAgent": SOFTWARE_AGENT,
    }
    return {"label": "c2pa.actions", "data": {"actions": [created]}}


def _context(identity: SigningIdentity | None, *, build: bool = False) -> c2pa.Context:
    settings: dict[str, Any] = dict(_READ_SETTINGS)
    if identity is not None:
        settings["trust"] = {"user_anchors": identity.anchors_pem}
    if build:
        settings["builder"] = {"thumbnail": {"enabled": False}}
    return c2pa.Context(c2pa.Settings.from_dict(settings))


def _sign(
    identity: SigningIdentity,
    definition: dict[str, Any],
    data: bytes,
    fmt: str,
    ingredient: tuple[dict[str, Any], bytes, str] | None = None,
) -> bytes:
    manifest = {"claim_generator_info": [SOFTWARE_AGENT], "format": SIGNABLE[fmt], **definition}
    info = c2pa.C2paSignerInfo(
        alg=identity.alg, sign_cert=identity.chain_pem, private_key=identity.key_pem, ta_url=None
    )
    out = io.BytesIO()
    with (
        _context(identity, build=True) as ctx,
        c2pa.Signer.from_info(info) as signer,
        c2pa.Builder(manifest, ctx) as builder,
    ):
        if ingredient is not None:
            ingredient_json, source, source_fmt = ingredient
            builder.add_ingredient(ingredient_json, SIGNABLE.get(source_fmt, source_fmt), io.BytesIO(source))
        builder.sign(signer, SIGNABLE[fmt], io.BytesIO(data), out)
    return out.getvalue()


def sign_generated(data: bytes, fmt: str, identity: SigningIdentity, generation: dict[str, Any]) -> bytes:
    """``data`` (a whole ``fmt`` file) with a signed manifest: created by Soundry from ``generation``.

    Args:
        data: The encoded file.
        fmt: ``wav``, ``mp3`` or ``flac`` (see :func:`can_sign`).
        identity: The installation's signing identity.
        generation: The ``org.soundry.generation`` assertion (``job_id``, ``model``, ``licence``,
            ``commercial_use``, ``seed``, ``watermark_payload``, ...), JSON-serialisable.

    Raises:
        c2pa.C2paError: when signing fails.
    """
    definition = {
        "title": f"{generation.get('job_id', 'soundry')}.{fmt}",
        "assertions": [_created_actions(), {"label": GENERATION_LABEL, "data": generation}],
    }
    return _sign(identity, definition, data, fmt)


@dataclass(frozen=True, slots=True)
class Signing:
    """What a worker needs to sign a job's files: the identity and the licence of the model(s)."""

    identity: SigningIdentity
    licence: str
    """The model's licence (a scene: every licence in it, joined with ``; ``)."""
    commercial_use: str
    """``allowed``, ``conditional`` or ``not_allowed`` (the catalog's words; a scene: its strictest)."""

    def assertion(self, spec: JobSpec, payload: int, **extra: Any) -> dict[str, Any]:
        """The ``org.soundry.generation`` assertion of a file of ``spec`` (``extra`` added).

        ``cloned_voice`` says whether the speech imitates a real person's voice (a library voice or
        raw references); which voice it is stays out: the manifest is public to whoever has the file,
        and only the job's owner may learn the voice (as the detect endpoint does).
        """
        return {
            "generator": GENERATOR,
            "kind": spec.kind,
            "model": spec.model,
            "licence": self.licence,
            "commercial_use": self.commercial_use,
            "job_id": spec.job_id,
            "seed": spec.seed,
            "watermark_payload": f"{payload:08x}",
            "cloned_voice": bool(spec.voice_id or spec.reference_uploads),
            **extra,
        }


def sign_job_file(
    data: bytes,
    spec: JobSpec,
    signing: Signing | None,
    payload: int,
    warnings: list[str],
    **extra: Any,
) -> tuple[bytes, bool]:
    """A file of ``spec`` (in ``spec.format``) signed when that format can carry C2PA; whether it is.

    A failed signature keeps the file unsigned and appends a warning rather than failing the job: the
    watermark is in the audio either way.
    """
    if signing is None or not can_sign(spec.format):
        return data, False
    try:
        return sign_generated(
            data, spec.format, signing.identity, signing.assertion(spec, payload, **extra)
        ), True
    except c2pa.C2paError as e:
        logger.exception("C2PA signing of job %s failed", spec.job_id)
        warnings.append(f"the file carries no C2PA Content Credentials: signing failed ({e})")
        return data, False


def generation_of_file(data: bytes, fmt: str) -> dict[str, Any] | None:
    """The ``org.soundry.generation`` assertion in the file's manifest chain, if any (not validated)."""
    if not can_sign(fmt):
        return None
    try:
        with _context(None) as ctx, c2pa.Reader(SIGNABLE[fmt], io.BytesIO(data), context=ctx) as reader:
            store = json.loads(reader.json())
    except c2pa.C2paError:
        return None
    return _generation(store, store.get("active_manifest"))


def sign_transcoded(
    data: bytes,
    fmt: str,
    identity: SigningIdentity,
    *,
    original: bytes,
    original_format: str,
    title: str,
    generation: dict[str, Any] | None = None,
) -> bytes:
    """A transcoded file signed anew: ``c2pa.opened`` of the original (its ``parentOf`` ingredient, with
    the original's own manifest when it has one) and ``c2pa.transcoded``.

    Args:
        data: The transcoded file in ``fmt``.
        fmt: Its format (see :func:`can_sign`).
        identity: The installation's signing identity.
        original: The stored file it was made from.
        original_format: That file's format (any; formats C2PA cannot read are hashed as plain data).
        title: File name for the manifest (``<job id>.<fmt>``).
        generation: The generation assertion to repeat in the new manifest (``None``: only the
            original's manifest carries it).

    Raises:
        c2pa.C2paError: when signing fails.
    """
    actions = [
        {"action": "c2pa.opened", "parameters": {"ingredientIds": ["original"]}},
        {
            "action": "c2pa.transcoded",
            "softwareAgent": SOFTWARE_AGENT,
            "description": f"{original_format} -> {fmt}",
        },
    ]
    assertions: list[dict[str, Any]] = [{"label": "c2pa.actions", "data": {"actions": actions}}]
    if generation is not None:
        assertions.append({"label": GENERATION_LABEL, "data": generation})
    stem = title.rsplit(".", 1)[0]
    ingredient = {"title": f"{stem}.{original_format}", "relationship": "parentOf", "label": "original"}
    return _sign(
        identity,
        {"title": title, "assertions": assertions},
        data,
        fmt,
        (ingredient, original, original_format),
    )


# ------------------------------------------------------------------------------------------ verifying


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a file's C2PA manifest says and whether it holds."""

    format: str | None
    supported: bool
    """False when the format cannot carry C2PA (``ogg``, raw, unknown)."""
    present: bool = False
    valid: bool | None = None
    """Signature and hashes check out (the signer may still be untrusted); ``None`` without a manifest."""
    state: str | None = None
    """c2pa's ``validation_state``: ``Trusted``, ``Valid`` or ``Invalid``."""
    trusted: bool = False
    """The signer chains to a root the reader trusts (this installation's CA included)."""
    signer: str | None = None
    issuer: str | None = None
    altered: bool | None = None
    """The file's bytes changed after signing (a data-hash mismatch); ``None`` without a manifest."""
    errors: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    ingredients: tuple[str, ...] = ()
    generation: dict[str, Any] | None = None
    note: str | None = None

    def summary(self) -> str:
        """One line for people: ``C2PA: ...``."""
        if not self.supported:
            return f"C2PA: {self.note or 'not supported for this format'}"
        if not self.present:
            return f"C2PA: no manifest{f' ({self.note})' if self.note else ''}"
        if self.altered:
            return "C2PA: INVALID, the audio was changed after signing (" + "; ".join(self.errors) + ")"
        if not self.valid:
            return "C2PA: INVALID (" + "; ".join(self.errors) + ")"
        trust = (
            "trusted"
            if self.trusted
            else "untrusted certificate (not one this installation or the reader trusts)"
        )
        issuer = f" (issuer {self.issuer})" if self.issuer else ""
        parts = [f"C2PA: valid, signed by {self.signer}{issuer}, {trust}, audio unchanged since signing"]
        g = self.generation
        if g:
            licence = f", licence {g.get('licence')}" if g.get("licence") else ""
            parts.append(
                f"made by {g.get('generator', 'Soundry')} with {g.get('model')}{licence}, "
                f"job {g.get('job_id')}"
            )
        if "c2pa.transcoded" in self.actions:
            parts.append("transcoded from " + ", ".join(self.ingredients))
        return "; ".join(parts)

    def public(self) -> dict[str, Any]:
        """The verdict as JSON-ready data."""
        return {
            "format": self.format,
            "supported": self.supported,
            "present": self.present,
            "valid": self.valid,
            "state": self.state,
            "trusted": self.trusted,
            "signer": self.signer,
            "issuer": self.issuer,
            "altered": self.altered,
            "errors": list(self.errors),
            "actions": list(self.actions),
            "ingredients": list(self.ingredients),
            "generation": self.generation,
            "note": self.note,
        }


def _generation(store: dict[str, Any], label: str | None, depth: int = 0) -> dict[str, Any] | None:
    """The generation assertion of manifest ``label``, else of its parent ingredient's manifest."""
    manifest = (store.get("manifests") or {}).get(label) if label else None
    if manifest is None or depth > 8:
        return None
    for assertion in manifest.get("assertions") or ():
        if assertion.get("label") == GENERATION_LABEL and isinstance(assertion.get("data"), dict):
            return dict(assertion["data"])
    for ingredient in manifest.get("ingredients") or ():
        if ingredient.get("relationship") == "parentOf":
            return _generation(store, ingredient.get("active_manifest"), depth + 1)
    return None


def verify(data: bytes, fmt: str | None, identity: SigningIdentity | None = None) -> Verdict:
    """Read and validate the C2PA manifest of a whole file (no network: no remote manifests, no OCSP).

    Args:
        data: The file.
        fmt: Its format (``wav``, ``mp3``, ``flac``, ``ogg``, ...), ``None`` when unknown.
        identity: This installation's identity: its root is trusted as well as any the reader knows.
    """
    if fmt is None or not can_sign(fmt):
        what = f"not supported for {fmt}" if fmt else "not supported for this format"
        return Verdict(
            format=fmt, supported=False, note=f"{what} (this file cannot carry Content Credentials)"
        )
    try:
        with _context(identity) as ctx, c2pa.Reader(SIGNABLE[fmt], io.BytesIO(data), context=ctx) as reader:
            store = json.loads(reader.json())
    except c2pa.C2paError.ManifestNotFound:
        return Verdict(format=fmt, supported=True)
    except c2pa.C2paError as e:
        return Verdict(format=fmt, supported=True, valid=False, errors=(str(e),), note=f"unreadable: {e}")
    label = store.get("active_manifest")
    manifest = (store.get("manifests") or {}).get(label) or {}
    results = (store.get("validation_results") or {}).get("activeManifest") or {}
    failures = [f for f in results.get("failure") or () if isinstance(f, dict)]
    if not results:  # older reports: one flat list
        failures = [f for f in store.get("validation_status") or () if isinstance(f, dict)]
    codes = {str(f.get("code")) for f in failures}
    errors = tuple(
        f"{f.get('code')}: {f.get('explanation', '')}".rstrip(": ")
        for f in failures
        if f.get("code") != UNTRUSTED
    )
    state = store.get("validation_state")
    signature = manifest.get("signature_info") or {}
    actions: list[str] = []
    for assertion in manifest.get("assertions") or ():
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            actions += [str(a.get("action")) for a in (assertion.get("data") or {}).get("actions") or ()]
    return Verdict(
        format=fmt,
        supported=True,
        present=True,
        valid=state in ("Valid", "Trusted") and not errors,
        state=state,
        trusted=state == "Trusted",
        signer=signature.get("common_name"),
        issuer=signature.get("issuer"),
        altered=bool(codes & ALTERED_CODES),
        errors=errors,
        actions=tuple(actions),
        ingredients=tuple(str(i.get("title")) for i in manifest.get("ingredients") or ()),
        generation=_generation(store, label),
    )
