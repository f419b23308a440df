# The test's application: Python with psycopg2, on the application network.
FROM debian:bookworm-slim
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      python3 python3-psycopg2 \
 && rm -rf /var/lib/apt/lists/*
