"""An S3 store on 127.0.0.1 for tests and benchmarks: moto's server in this process, with
fake keys that its clients (this process, Ray nodes, jobs) get through the `AWS_*` variables
of `env`."""

import logging

FAKE_SECRET = "moto-fake-secret-never-logged-0123"


class MotoS3:
    def __init__(self):
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.env = None

    def start(self):
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.env = {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "AKIAMOTOTESTKEY",
            "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        return self

    def client(self):
        """A boto3 S3 client of this store."""
        import boto3

        env = self.env
        return boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
        )

    def upload_tree(self, folder, bucket, prefix=""):
        """Every file under `folder` to s3://bucket/prefix/<its relative path>; the URI."""
        client = self.client()
        try:
            client.create_bucket(Bucket=bucket)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                key = "/".join(filter(None, [prefix, path.relative_to(folder).as_posix()]))
                client.upload_file(str(path), bucket, key)
        return "/".join(filter(None, [f"s3://{bucket}", prefix]))

    def stop(self):
        self.server.stop()
