# One image with every Tally binary and the built dashboard; the compose file
# and the helm chart pick the command.
FROM node:20-bookworm AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
      --bin ingest-gateway --bin stream-aggregator --bin report-refresher --bin query-service \
      --bin tally-admin --bin tally-sample

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 tally
COPY --from=build /src/target/release/ingest-gateway /src/target/release/stream-aggregator \
                  /src/target/release/report-refresher \
                  /src/target/release/query-service /src/target/release/tally-admin \
                  /src/target/release/tally-sample /usr/local/bin/
COPY --from=web /web/dist /usr/share/tally/web
USER tally
ENV TALLY_LOG_FORMAT=json TALLY_WEB_DIR=/usr/share/tally/web
