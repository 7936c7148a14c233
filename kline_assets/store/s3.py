"""The S3-compatible backend (AWS S3, MinIO, Cloudflare R2, Ceph) through boto3.

boto3 because it is the reference client: it reads the standard `AWS_*` variables and files (credentials,
`AWS_REGION`, `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_S3`), retries throttling, and sends the conditional
writes (`IfMatch`, `IfNoneMatch`) the manifest's compare-and-swap needs; pyarrow's S3 filesystem cannot,
and is used only to hand readers a `pyarrow.dataset` over listed chunks. One client per backend: boto3
clients are thread-safe and keep a pool of connections.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from typing import BinaryIO

import boto3
import pyarrow.fs as pafs
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from kline_assets.errors import BadInput, StorageUnavailable
from kline_assets.store.backend import S3_SCHEME, Listed

PART_BYTES = 8 << 20  # a multipart upload's part (S3's minimum is 5 MiB, except for the last)
CONFLICT = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
MISSING = {"NoSuchKey", "404", "NotFound"}
REFUSED = {"NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403",
           "AllAccessDisabled", "InvalidBucketName"}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Backend:
    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")
        bucket, _, prefix = self.root[len(S3_SCHEME):].partition("/")
        if not bucket:
            raise BadInput(f"data root {root}: name a bucket, as in s3://bucket/prefix")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        # a custom endpoint (MinIO, moto, Ceph) is addressed by path: its host is rarely a wildcard DNS name
        custom = bool(os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))
        config = Config(retries={"max_attempts": 6, "mode": "standard"}, max_pool_connections=64,
                        connect_timeout=10, read_timeout=60,
                        s3={"addressing_style": "path" if custom else "auto"})
        self.session = boto3.session.Session()
        self.client = self.session.client("s3", config=config)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self._key(key)}"

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """S3's answers in the package's terms: absent, bad input (one line, exit 2), or unavailable."""
        try:
            yield
        except ClientError as exc:
            code = _code(exc)
            if code in MISSING:
                raise FileNotFoundError(what) from None
            message = exc.response.get("Error", {}).get("Message") or code
            if code in REFUSED:
                raise BadInput(f"{self.root}: {code} ({message})") from None
            raise StorageUnavailable(f"{self.root}: {what}: {code} ({message})") from None
        except NoCredentialsError:
            raise BadInput(f"{self.root}: no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                           "or a profile)") from None
        except BotoCoreError as exc:
            raise StorageUnavailable(f"{self.root}: {what}: {exc}") from None

    def get(self, key: str) -> bytes:
        return self.get_versioned(key)[0]

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        with self._errors(f"{self.uri(key)} not found"):
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return answer["Body"].read(), answer["ETag"]

    def exists(self, key: str) -> bool:
        try:
            with self._errors(key):
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except FileNotFoundError:
            return False

    def put(self, key: str, data: bytes) -> None:
        with self._errors(f"PUT {self.uri(key)}"):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def put_if(self, key: str, data: bytes, token: str | None) -> bool:
        condition = {"IfMatch": token} if token is not None else {"IfNoneMatch": "*"}
        with self._errors(f"PUT {self.uri(key)}"):
            try:
                self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **condition)
            except ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if _code(exc) in CONFLICT or status in (409, 412):  # another writer's version is there now
                    return False
                raise
        return True

    def delete(self, key: str) -> None:
        with self._errors(f"DELETE {self.uri(key)}"):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str) -> list[Listed]:
        found = []
        cut = len(self._key(""))
        with self._errors(f"LIST {self.uri(prefix)}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                               Prefix=self._key(prefix)):
                found += [Listed(item["Key"][cut:], item["Size"], item["LastModified"].timestamp())
                          for item in page.get("Contents", [])]
        return found

    def dirs(self, prefix: str) -> list[str]:
        names = []
        full = self._key(prefix)
        with self._errors(f"LIST {self.uri(prefix)}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full,
                                                                               Delimiter="/"):
                names += [p["Prefix"][len(full):].rstrip("/") for p in page.get("CommonPrefixes", [])]
        return sorted(names)

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        """A multipart upload fed part by part (memory: one part); completed only when the block ends."""
        sink = _MultipartSink(self, self._key(key))
        try:
            yield sink
            with self._errors(f"PUT {self.uri(key)}"):
                sink.finish()
        except BaseException:
            sink.abort()
            raise

    def arrow(self) -> tuple[pafs.FileSystem, str]:
        frozen = self.session.get_credentials()
        creds = frozen.get_frozen_credentials() if frozen else None
        endpoint = self.client.meta.endpoint_url
        scheme, _, host = endpoint.partition("://")
        fs = pafs.S3FileSystem(
            access_key=creds.access_key if creds else None, secret_key=creds.secret_key if creds else None,
            session_token=creds.token if creds else None, region=self.client.meta.region_name,
            endpoint_override=host if os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            else None, scheme=scheme)
        return fs, f"{self.bucket}/{self.prefix}".rstrip("/")

    def check_writable(self, key: str) -> None:
        probe = f"{key.rstrip('/')}/.kline_assets_write_probe"
        self.put(probe, b"")
        self.delete(probe)


class _MultipartSink(io.RawIOBase):
    def __init__(self, backend: S3Backend, key: str) -> None:
        super().__init__()
        self.backend, self.key = backend, key
        self.buffer = bytearray()
        self.parts: list[dict] = []
        self.upload_id: str | None = None
        self.position = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def write(self, data) -> int:
        self.buffer += data
        self.position += len(data)
        if len(self.buffer) >= PART_BYTES:
            self._upload_part()
        return len(data)

    def _upload_part(self) -> None:
        client = self.backend.client
        with self.backend._errors(f"multipart PUT {self.key}"):
            if self.upload_id is None:
                self.upload_id = client.create_multipart_upload(Bucket=self.backend.bucket, Key=self.key)["UploadId"]
            number = len(self.parts) + 1
            answer = client.upload_part(Bucket=self.backend.bucket, Key=self.key, UploadId=self.upload_id,
                                        PartNumber=number, Body=bytes(self.buffer))
        self.parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        self.buffer.clear()

    def finish(self) -> None:
        client = self.backend.client
        if self.upload_id is None:  # small enough for one PUT
            client.put_object(Bucket=self.backend.bucket, Key=self.key, Body=bytes(self.buffer))
            return
        if self.buffer:
            self._upload_part()
        client.complete_multipart_upload(Bucket=self.backend.bucket, Key=self.key, UploadId=self.upload_id,
                                         MultipartUpload={"Parts": self.parts})

    def abort(self) -> None:
        if self.upload_id is not None:
            with contextlib.suppress(ClientError, BotoCoreError):
                self.backend.client.abort_multipart_upload(Bucket=self.backend.bucket, Key=self.key,
                                                           UploadId=self.upload_id)
