"""AWS-emulator tests (LocalStack + moto server); see conftest.py."""
