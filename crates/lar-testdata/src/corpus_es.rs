//! A Spanish corpus for retrieval in another language than the default embedder's: five Markdown articles as
//! people keep them, one long and broad (a guide to settling in Spain that touches food, travel, energy and
//! housing in passing) and four on one subject each (paella, the Camino de Santiago, solar panels at home, renting
//! a flat), with ten questions asked the way people ask them: other inflections than the text uses ("alquilar" for
//! "alquiler", "instalar" for "instalación"), with and without accents. A retriever that matches only exact folded
//! words, or lets the long article take every top slot, misses several.

use std::path::Path;

/// `(file name, text)` of every article.
pub const FILES: &[(&str, &str)] = &[
    ("vivir-en-espana.md", GUIA),
    ("paella.md", PAELLA),
    ("camino-de-santiago.md", CAMINO),
    ("placas-solares.md", SOLAR),
    ("alquiler.md", ALQUILER),
];

/// `(question, the file that answers it)`: two per article with its own words, then questions in other
/// inflections of them.
pub const QUESTIONS: &[(&str, &str)] = &[
    (
        "¿Qué arroz hay que usar para hacer una paella valenciana?",
        "paella.md",
    ),
    (
        "cuanto tiempo se deja reposar la paella antes de servirla",
        "paella.md",
    ),
    (
        "¿Cuántos kilómetros hay que caminar para conseguir la Compostela?",
        "camino-de-santiago.md",
    ),
    (
        "donde se sella la credencial del peregrino",
        "camino-de-santiago.md",
    ),
    (
        "¿Cuánto cuesta instalar paneles solares en un tejado?",
        "placas-solares.md",
    ),
    (
        "en cuantos años se amortizan las placas",
        "placas-solares.md",
    ),
    (
        "¿Cuántos meses de fianza pide el casero al alquilar un piso?",
        "alquiler.md",
    ),
    ("cuanto puede subir el alquiler cada año", "alquiler.md"),
    ("¿Cómo se pide cita para el NIE?", "vivir-en-espana.md"),
    (
        "que hay que hacer para empadronarse en el ayuntamiento",
        "vivir-en-espana.md",
    ),
    ("¿Cuántos minutos tiene que cocer el grano?", "paella.md"),
    (
        "¿Qué necesito para alojarme en un albergue?",
        "camino-de-santiago.md",
    ),
    (
        "cuanto me ahorrare en la factura con el autoconsumo",
        "placas-solares.md",
    ),
    (
        "¿Con cuánta antelación tengo que avisar si me voy del piso?",
        "alquiler.md",
    ),
    (
        "¿Qué documentos llevo a la cita de extranjería?",
        "vivir-en-espana.md",
    ),
    ("¿A qué hora cenan los españoles?", "vivir-en-espana.md"),
];

/// The questions as `lar kb eval` reads them (`{"q": ..., "pages": [...]}` per line).
pub fn questions_jsonl() -> String {
    crate::corpus::jsonl(QUESTIONS)
}

/// Writes the articles into `dir` (created) and `preguntas.jsonl` into `dir`'s parent.
pub fn write(dir: &Path) -> std::io::Result<()> {
    let files: Vec<(&str, Vec<u8>)> = FILES
        .iter()
        .map(|(n, t)| (*n, t.as_bytes().to_vec()))
        .collect();
    crate::corpus::write_files(dir, &files, ("preguntas.jsonl", questions_jsonl()))
}

const PAELLA: &str = "# La paella valenciana

La paella nació en los campos de arroz de la Albufera, al sur de la ciudad de Valencia, como una comida de
jornaleros que se cocinaba al aire libre sobre un fuego de leña de naranjo. El nombre viene del recipiente, la
paella, una sartén ancha y poco profunda con dos asas.

## Ingredientes

La receta tradicional lleva pollo, conejo, judía verde (bajoqueta), garrofó, tomate rallado, pimentón dulce,
azafrán, aceite de oliva, sal, agua y arroz. El arroz debe ser de grano redondo y medio, que absorbe bien el caldo
sin romperse: las variedades bomba y senia son las más apreciadas, y la bomba perdona más si nos pasamos con el
agua. Nada de chorizo, cebolla ni guisantes: en Valencia eso ya no se considera paella.

## Preparación

Se sofríe la carne a fuego fuerte hasta que esté bien dorada, se añade la verdura y después el tomate y el
pimentón, con cuidado de que no se queme. Se echa el agua, que debe cubrir hasta los remaches de las asas, y se
deja hervir unos veinte minutos para hacer el caldo. Entonces se añade el arroz repartido en forma de cruz y se
extiende por toda la paella; a partir de ese momento no se remueve.

El arroz se cuece unos dieciocho minutos: los primeros diez a fuego fuerte y el resto a fuego suave. Al final se
sube el fuego un minuto para que se forme el socarrat, la capa tostada del fondo. Antes de servirla, la paella
reposa cinco minutos tapada con un paño limpio, para que el grano termine de hacerse.
";

const CAMINO: &str = "# El Camino de Santiago

El Camino de Santiago es la red de rutas de peregrinación que llevan a la tumba del apóstol Santiago, en la
catedral de Santiago de Compostela. El más transitado es el Camino Francés, que empieza en Saint-Jean-Pied-de-Port
y recorre unos 780 kilómetros por Navarra, La Rioja, Castilla y León y Galicia.

## La credencial y la Compostela

Para dormir en los albergues de peregrinos hace falta la credencial, un librillo que se compra en las
asociaciones de amigos del Camino o en muchas parroquias. Se sella en los albergues, las iglesias, los bares y
los ayuntamientos por los que se pasa, al menos una vez al día, y dos veces al día en los últimos 100 kilómetros.

La Compostela es el certificado que da la Oficina del Peregrino, junto a la catedral, a quien ha recorrido a pie
como mínimo los últimos 100 kilómetros, o 200 en bicicleta o a caballo. Por eso muchos peregrinos empiezan en
Sarria, que está a poco más de cien kilómetros de Santiago.

## Consejos

La mejor época es la primavera o septiembre, con menos calor y menos gente que en agosto. Conviene llevar una
mochila de no más del diez por ciento del peso de uno mismo y unas botas ya usadas, nunca nuevas. Los albergues
públicos no admiten reservas y cuestan entre ocho y doce euros la noche.
";

const SOLAR: &str = "# Placas solares en casa

El autoconsumo con paneles fotovoltaicos se ha extendido mucho en España desde que en 2019 desapareció el
llamado impuesto al sol. Una vivienda unifamiliar con un consumo medio suele necesitar entre seis y ocho paneles,
unos tres kilovatios de potencia, que ocupan unos quince metros cuadrados de tejado orientado al sur.

## Precio y amortización

Una instalación de tres kilovatios cuesta entre 4.500 y 6.000 euros, con el inversor, la estructura, el montaje
y la legalización incluidos. Las baterías son opcionales y añaden entre 3.000 y 5.000 euros más. Con la
compensación de excedentes, la energía que no se consume se descuenta de la factura, y el ahorro medio ronda el
cuarenta por ciento. La inversión se recupera en unos seis o siete años, y los paneles duran más de veinticinco.

## Trámites y ayudas

La instalación necesita una licencia de obra menor o una declaración responsable en el ayuntamiento, según el
municipio. Muchos ayuntamientos ofrecen una bonificación del IBI de hasta el cincuenta por ciento durante varios
años, y en la declaración de la renta se puede deducir una parte del gasto.
";

const ALQUILER: &str = "# Alquilar un piso

## El contrato

Los contratos de alquiler de vivienda habitual duran como mínimo cinco años si el casero es una persona física, o
siete si es una empresa: aunque el contrato diga un año, el inquilino puede prorrogarlo cada año hasta ese
mínimo. A partir del primer año, el inquilino puede irse avisando con treinta días de antelación.

## La fianza y las garantías

La ley obliga a dar una fianza de una mensualidad de renta, que el casero deposita en el organismo de la comunidad
autónoma y devuelve al terminar el contrato si el piso está en buen estado. Además, puede pedir garantías
adicionales de hasta dos mensualidades más. Los gastos de la inmobiliaria los paga el propietario.

## La renta

La renta se actualiza una vez al año, en la fecha del aniversario del contrato. Desde 2024 la subida anual está
limitada por un índice de referencia que publica el Instituto Nacional de Estadística, pensado para que quede
por debajo del IPC. Si el contrato no dice nada sobre la actualización, la renta no puede subir.
";

const GUIA: &str = "# Guía para instalarse en España

Esta guía reúne lo que nos habría gustado saber el primer año después de mudarnos a España: los papeles, la
vivienda, la sanidad, los bancos, el transporte, la comida y las costumbres. No sustituye a un asesor, pero ayuda
a no perderse.

## Los papeles: NIE y empadronamiento

El NIE es el número de identidad de extranjero, y hace falta para casi todo: abrir una cuenta en el banco,
firmar un contrato de alquiler, trabajar o comprar un coche. La cita previa se pide por internet, en la sede
electrónica de las oficinas de extranjería, eligiendo la provincia y el trámite; en las ciudades grandes las citas
se agotan pronto y conviene entrar a primera hora de la mañana, cuando se liberan nuevas. El día de la cita hay
que llevar el pasaporte, el formulario EX-15 relleno y el justificante de haber pagado la tasa 790 en el banco.

El empadronamiento es la inscripción en el padrón municipal del ayuntamiento donde se vive. Se hace en la oficina
de atención al ciudadano con el pasaporte o el NIE y el contrato de alquiler o las escrituras del piso; en muchos
ayuntamientos se pide cita. El certificado de empadronamiento se pide después para la tarjeta sanitaria, para
matricular a los niños en el colegio y para muchos trámites más.

## La vivienda

Casi todo el mundo empieza de alquiler. Los portales inmobiliarios son la forma más habitual de buscar piso, y en
las ciudades grandes los pisos buenos vuelan en pocos días, así que conviene tener preparados los papeles: las
nóminas, el contrato de trabajo y el NIE. El precio del alquiler varía muchísimo entre barrios y ciudades. En
verano muchas comunidades de vecinos abren la piscina, y las cuotas de la comunidad suelen ir incluidas en la
renta, aunque conviene preguntarlo.

Cada vez más casas tienen placas solares en el tejado, sobre todo en las urbanizaciones, y en el sur el aire
acondicionado es casi imprescindible en julio y agosto. La factura de la luz tiene una parte fija por la potencia
contratada y otra por la energía consumida, y el precio cambia según la hora del día.

## Sanidad

La sanidad pública es universal. Con el certificado de empadronamiento y la afiliación a la Seguridad Social se
pide la tarjeta sanitaria en el centro de salud del barrio, donde te asignan un médico de familia. Las urgencias
se atienden siempre, con tarjeta o sin ella. Muchos trabajadores tienen además un seguro privado, que da acceso
a especialistas sin lista de espera.

## Bancos y dinero

Para abrir una cuenta de residente hace falta el NIE; sin él, solo una cuenta de no residente, con más
comisiones. El pago con el móvil y con tarjeta está muy extendido, aunque en algunos bares de pueblo todavía se
prefiere el efectivo. Las transferencias entre bancos españoles suelen ser inmediatas con Bizum.

## Transporte

La red de trenes de alta velocidad une Madrid con casi todas las capitales de provincia en pocas horas, y los
billetes salen más baratos comprados con antelación. En las ciudades, el abono mensual de transporte público es
barato y tiene descuentos para jóvenes. Para conducir, el carné de muchos países se puede canjear por el español
durante los primeros meses de residencia.

## El trabajo

El contrato de trabajo más común es el indefinido, con un periodo de prueba de unos meses. La nómina se cobra a
final de mes, normalmente en doce o catorce pagas, y las pagas extra llegan en verano y en Navidad. La jornada
completa es de cuarenta horas semanales, y en verano muchas empresas tienen jornada intensiva, de mañana. Las
vacaciones son de treinta días naturales al año, y los festivos cambian de una comunidad autónoma a otra.

Para darse de alta como autónomo hay que inscribirse en Hacienda y en la Seguridad Social y pagar una cuota
mensual que depende de los ingresos; el primer año hay una tarifa reducida. Conviene tener un gestor que lleve
las declaraciones trimestrales del IVA y del IRPF.

## Los colegios

La escolarización es obligatoria de los seis a los dieciséis años, aunque casi todos los niños empiezan el
colegio con tres. Hay colegios públicos, concertados y privados; la plaza en los públicos y concertados se pide en
primavera, y se adjudica por puntos según la cercanía del domicilio, los hermanos en el centro y la renta. En
algunas comunidades las clases son en parte en la lengua propia, como el catalán, el gallego o el euskera.

## Impuestos

La declaración de la renta se presenta entre abril y junio del año siguiente, por internet, con el borrador que
prepara la Agencia Tributaria. Quien tiene un piso en propiedad paga cada año el IBI al ayuntamiento, y al
comprar una vivienda se paga el impuesto de transmisiones patrimoniales si es de segunda mano, o el IVA si es
nueva. Los residentes tributan por lo que ganan en todo el mundo, no solo en España.

## Teléfono e internet

Las operadoras venden paquetes de fibra, móvil y televisión, con permanencias de doce meses que conviene leer
antes de firmar. La instalación de la fibra suele tardar una o dos semanas. Con el NIE y una cuenta bancaria se
puede contratar cualquier tarifa; sin ellos, solo tarjetas de prepago.

## El clima y la ropa

El clima cambia mucho de una región a otra: el norte es verde y lluvioso, el centro tiene inviernos fríos y
veranos muy calurosos, y en la costa mediterránea los inviernos son suaves. En Madrid puede helar en enero y
pasar de cuarenta grados en julio, así que hace falta ropa para las dos cosas. En las casas antiguas del sur la
calefacción es escasa, y los inviernos se notan más dentro que fuera.

## Idiomas

El castellano se habla en todo el país, y en Cataluña, la Comunidad Valenciana, las Islas Baleares, Galicia, el
País Vasco y Navarra hay además otra lengua oficial. Las escuelas oficiales de idiomas ofrecen cursos de español
para extranjeros a buen precio, y muchos ayuntamientos y asociaciones tienen clases gratuitas. Los intercambios de
conversación en los bares son la forma más agradable de practicar.

## Mascotas

Los perros y los gatos tienen que llevar microchip y estar inscritos en el registro de la comunidad autónoma, y
los perros necesitan la vacuna de la rabia en casi todo el país. Muchos alquileres no admiten mascotas, así que
conviene preguntarlo antes de firmar. En las playas los perros solo pueden entrar en las zonas señaladas.

## Ocio

Los museos nacionales tienen horas de entrada gratuita por la tarde y los domingos. Los bares de tapas son el
centro de la vida social: en algunas ciudades, como Granada o León, la tapa viene gratis con la bebida. Las
rutas de senderismo están señalizadas con marcas blancas y rojas para los recorridos largos y blancas y amarillas
para los cortos, y muchos pueblos tienen piscina municipal abierta de junio a septiembre.

## La comida y las costumbres

Los horarios sorprenden al principio: se come entre las dos y las cuatro de la tarde y se cena a partir de las
nueve. Cada región tiene su cocina; en Valencia hay que probar la paella, que allí se come a mediodía y nunca para
cenar, y en Galicia el pulpo. Muchos recién llegados hacen alguna etapa del Camino de Santiago para conocer el
norte, y los peregrinos se saludan con un buen camino.

En agosto muchas ciudades se vacían porque la gente se va de vacaciones a la costa o al pueblo, y bastantes
comercios pequeños cierran dos o tres semanas. Las fiestas de cada pueblo, con sus verbenas, son la mejor ocasión
para conocer a los vecinos.
";
