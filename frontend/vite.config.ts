import { defineConfig } from 'vitest/config';
import react from '@vitejs/plugin-react';

// `npm run dev` proxies the API to a gateway on CANVASCHAT_DEV_GATEWAY (default
// 127.0.0.1:8080) so the page and /api/chat share an origin as in production.
const gateway = process.env.CANVASCHAT_DEV_GATEWAY ?? '127.0.0.1:8080';

export default defineConfig({
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
  },
  server: {
    host: '127.0.0.1',
    proxy: {
      '/api': { target: `http://${gateway}`, ws: true },
    },
  },
  test: {
    include: ['src/**/*.test.{ts,tsx}'],
    environment: 'node',
    restoreMocks: true,
  },
});
