import { defineConfig } from "vite";

// The controller serves dist/index.html at / and dist/assets/* at /assets (controller.api.board).
export default defineConfig({
  base: "/",
  build: { outDir: "dist", emptyOutDir: true, assetsDir: "assets", chunkSizeWarningLimit: 300 },
});
