// Next.js configuration. The app runs under its own server (server.js), so no
// `output: 'standalone'`: the image keeps the production node_modules and `.next`.
/** @type {import('next').NextConfig} */
const nextConfig = {
  poweredByHeader: false,
  reactStrictMode: true,
  // pg is used only by server.js, never bundled.
  serverExternalPackages: ['pg'],
};

export default nextConfig;
