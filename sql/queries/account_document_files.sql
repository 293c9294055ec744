-- The frozen bytes of one issued document, only when it was issued to $tenant:
-- the PDF (Factur-X), the invoice JSON, each with its SHA-256 (hex), the SHA-256 of
-- the factur-x.xml embedded in the PDF, and the Peppol UBL twin when one was issued
-- (NULL otherwise).
SELECT d.number, d.kind, d.period, d.pdf_bytes, d.pdf_sha256, d.json_bytes, d.json_sha256, d.xml_sha256,
       u.ubl_bytes, u.ubl_sha256
FROM billing_documents AS d
LEFT JOIN billing_ubl_documents AS u ON u.number = d.number
WHERE d.tenant = $tenant
  AND d.number = $number;
