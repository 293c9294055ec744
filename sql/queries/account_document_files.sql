-- The frozen bytes of one issued document, only when it was issued to $tenant:
-- the PDF (Factur-X), the invoice JSON, each with its SHA-256 (hex), and the SHA-256 of
-- the factur-x.xml embedded in the PDF.
SELECT number, kind, period, pdf_bytes, pdf_sha256, json_bytes, json_sha256, xml_sha256
FROM billing_documents
WHERE tenant = $tenant
  AND number = $number;
