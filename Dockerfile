# ollama-registry: `docker run -d -p 8080:8080 -v ollama-registry:/data IMAGE` is the whole deployment.
# Builds with Docker, podman or buildah 1.28 (so: no COPY --link, no RUN heredocs). BASE can point
# at a locally made Node 22 image (scripts/image-smoke.sh builds one without an image registry).
ARG BASE=node:22-bookworm-slim

FROM ${BASE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: "prepare" (tsc) runs below, once the sources are in.
RUN npm ci --ignore-scripts --prefer-offline --no-audit --no-fund --no-update-notifier
COPY tsconfig.json ./
COPY src ./src
# Compile the server and the web page's script (npm run build), then drop the dev dependencies
# (typescript): the runtime stage copies what is left.
RUN npm run build && chmod +x dist/src/main.js \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund --no-update-notifier

FROM ${BASE}
WORKDIR /app
# /data belongs to uid 1000 before VOLUME, so a new named volume does too;
# /usr/local/bin/ollama-registry makes `docker exec NAME ollama-registry …` work.
RUN mkdir -p /data && chown node:node /data \
 && ln -s /app/dist/src/main.js /usr/local/bin/ollama-registry
COPY package.json package-lock.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
# The web catalog's page, CSS and icon, served from here (src/ui/routes.ts: STATIC_DIR).
COPY --from=build /app/src/ui/static ./src/ui/static
ENV NODE_ENV=production \
    OLLAMA_REGISTRY_DATA=/data \
    OLLAMA_REGISTRY_LISTEN=0.0.0.0:8080
USER node
VOLUME /data
EXPOSE 8080
# The slim image has no curl: ask /healthz with node, on the port OLLAMA_REGISTRY_LISTEN names.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "const t=!!process.env.OLLAMA_REGISTRY_TLS_CERT,p=(process.env.OLLAMA_REGISTRY_LISTEN||'8080').split(':').pop();require(t?'https':'http').get({host:'127.0.0.1',port:p,path:'/healthz',rejectUnauthorized:false,timeout:4000},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1)).on('timeout',()=>process.exit(1))"]
ENTRYPOINT ["ollama-registry"]
CMD ["serve"]
