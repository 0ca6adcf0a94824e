import { defineConfig } from 'vite';

// Plain JSX compiled by esbuild for Preact (no extra plugin). The query
// service serves dist/ itself: absolute base '/', built files under /assets/.
export default defineConfig({
  base: '/',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    target: 'es2020',
    sourcemap: false,
    emptyOutDir: true,
    reportCompressedSize: true,
  },
  server: {
    // `npm run dev` against the mock (node dev/mock.mjs, port 8090) or a real query service.
    proxy: { '/api': { target: process.env.TALLY_API || 'http://127.0.0.1:8090', changeOrigin: false } },
  },
});
