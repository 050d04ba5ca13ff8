# The loraflow Temporal worker (workflows + activities). The GPU worker has its own Dockerfile.gpu.
ARG NODE_VERSION=20.20.2
FROM node:${NODE_VERSION}-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY tsconfig.json worker.ts ./
COPY activities ./activities
COPY workflows ./workflows
COPY contract ./contract
COPY lib ./lib
USER node
CMD ["node", "--import", "tsx", "worker.ts"]
