// eslint for the sidebar source: typescript-eslint's recommended rules plus the
// JupyterLab convention that interfaces start with "I".
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['lib/', 'coverage/', 'node_modules/', '*.js', '*.mjs'] },
  ...tseslint.configs.recommended,
  {
    files: ['src/**/*.{ts,tsx}'],
    rules: {
      '@typescript-eslint/naming-convention': [
        'error',
        { selector: 'interface', format: ['PascalCase'], custom: { regex: '^I[A-Z]', match: true } }
      ],
      '@typescript-eslint/no-namespace': 'off',
      '@typescript-eslint/no-unused-vars': ['warn', { args: 'none' }],
      eqeqeq: 'error',
      'prefer-arrow-callback': 'error'
    }
  }
);
